"""Federated aggregation rounds."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from aivo.api.schemas.common import MAX_INT32, RequestModel
from aivo.utils import JsonInt


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


class AggregateCreate(RequestModel):
    dry_run: bool = Field(False, description="Compute the round and the gate's verdict; register, promote and "
                                             "charge nothing. Runs now and answers with the report (200).")
    strategy: Literal["fedavg", "fedprox", "weighted", "median", "trimmed-mean"] | None = Field(
        None, description="Dry runs only (default AIVO_AGGREGATION_STRATEGY).")
    min_learners: JsonInt | None = Field(None, ge=1, le=MAX_INT32, description="Dry runs only (default AIVO_MIN_LEARNERS).")
    max_stale_days: float | None = Field(None, ge=0, le=36_600, description="Dry runs only (default "
                                                                           "AIVO_MAX_STALE_DAYS; at most 100 years).")
    reason: str = Field("manual aggregation", max_length=500, description="Kept with the queued job.")


class AggregationJobPublic(BaseModel):
    status: str = Field(..., description="queued, or already_training when a round is already queued or running.")
    job_id: int | None = Field(None, description="Follow it with GET /trainer/jobs/{id}.")
    reason: str


class AggregatePublic(BaseModel):
    dry_run: bool
    report: dict[str, Any] | None = Field(None, description="Dry run: the round's report (counts, privacy, "
                                                            "metrics before and after, the gate's verdict).")
    job: AggregationJobPublic | None = Field(None, description="Real round: the queued federated trainer job.")
