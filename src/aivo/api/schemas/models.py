"""Main Brain versions: list, status, promote, rollback."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from aivo.api.schemas.common import RequestModel


class ModelVersionPublic(BaseModel):
    version: str
    status: str = Field(..., description="candidate, active or archived.")
    architecture: dict[str, Any]
    training_metrics: dict[str, Any]
    data_hash: str | None
    parent_version: str | None
    artifact_sha256: str
    artifact_size: int
    created_by: str | None
    created_at: datetime
    activated_at: datetime | None


class ModelStatusPublic(BaseModel):
    model_id: str
    version: ModelVersionPublic | None = Field(None, description="Null when no version is active yet.")
    active: bool
    loaded: bool = Field(..., description="This API process holds the version in memory.")
    test_auc: float | None = None
    details: dict[str, Any] = Field(default_factory=dict,
                                    description="Training and drift state when the scheduler reports it.")


class PromoteCreate(RequestModel):
    reason: str = Field(..., min_length=1, max_length=1000, description="Why (kept in the audit log).")


class RollbackCreate(RequestModel):
    reason: str = Field(..., min_length=1, max_length=1000)
    to_version: str | None = Field(None, description="Default: the version active before the current one.")
