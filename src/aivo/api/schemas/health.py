"""GET /health and GET /stats."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field


class ComponentHealth(BaseModel):
    ok: bool
    detail: str = ""
    latency_ms: float | None = None


class ActiveModelHealth(BaseModel):
    version: str | None
    loaded: bool = Field(..., description="This process holds the active Main Brain in memory.")


class HealthPublic(BaseModel):
    status: Literal["ok", "degraded", "unavailable"]
    version: str
    database: ComponentHealth
    artifact_store: ComponentHealth
    scheduler: dict[str, Any]
    active_model: ActiveModelHealth
    tutor: dict[str, Any] | None = None
    timestamp: datetime


class StatsPublic(BaseModel):
    registry: dict[str, Any]
    api: dict[str, Any]
    timestamp: datetime
