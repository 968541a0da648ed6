"""Federated aggregation rounds."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel


class FederatedUpdatePublic(BaseModel):
    id: int
    version_before: str
    version_after: str | None
    strategy: str
    num_contributors: int
    metrics_before: dict[str, Any]
    metrics_after: dict[str, Any]
    improvement: float | None
    privacy: dict[str, Any]
    status: str
    details: dict[str, Any]
    created_at: datetime
