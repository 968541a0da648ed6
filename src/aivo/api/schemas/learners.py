"""Learner status, export and erasure."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from aivo.api.schemas.common import RequestModel
from aivo.api.schemas.interactions import AttemptFields


class LearnerModelPublic(BaseModel):
    kind: str = Field(..., description="brain (knowledge tracing clone) or tutor (LoRA adapter).")
    status: str
    source_version: str
    metrics: dict[str, Any]
    performance: float | None
    last_trained_at: datetime | None
    num_training_sessions: int
    record_level_epsilon: float | None = Field(
        None, description="Record-level epsilon of its local DP-SGD sessions, composed (never added to user-level).")


class PrivacyPublic(BaseModel):
    """User-level privacy spent by taking part in federated aggregation (the learner's ledger).
    Record-level epsilon of local DP-SGD is per model, in `models`; the two are never added."""

    epsilon: float | None = Field(..., description="Spent at `delta`; null when unbounded (a round without DP).")
    unbounded: bool
    delta: float
    accountant: str
    budget: float
    remaining: float | None
    exhausted: bool = Field(..., description="The learner no longer contributes to aggregation.")
    rounds_eligible: int
    rounds_sampled: int
    non_private_rounds: int
    last_round_at: datetime | None


class LearnerPublic(BaseModel):
    learner_id: str = Field(..., description="The stored pseudonym (the tutor endpoints' student_id).")
    tenant: str
    created_at: datetime
    num_interactions: int
    last_interaction_at: datetime | None
    models: list[LearnerModelPublic]
    privacy: PrivacyPublic


class LearnerSummaryPublic(BaseModel):
    learner_id: str
    tenant: str
    created_at: datetime


class LearnerDeletedPublic(BaseModel):
    deleted: bool = True
    rows_deleted: dict[str, int]
    artifacts_deleted: int


class BaselineCreate(RequestModel):
    """A baseline assessment's answers, one attempt each (the learner is the one in the URL)."""

    answers: list[AttemptFields] = Field(..., min_length=1, max_length=1000)
    reset_clone: bool = Field(False, description="Start an existing clone over from the active Main Brain.")


class SkillBaselinePublic(BaseModel):
    skill_id: str
    attempts: int
    accuracy: float


class BaselineTrainingPublic(BaseModel):
    status: str = Field(..., description="queued, already_training or too_soon.")
    job_id: int | None = Field(None, description="Follow it with GET /trainer/jobs/{id}.")
    reason: str


class BaselineClonePublic(BaseModel):
    kind: str
    status: str = Field(..., description="pending until its first local training, then active or fallback.")
    source_version: str = Field(..., description="The Main Brain version it was cloned from.")
    created: bool = Field(..., description="False when the learner already had a clone (kept).")


class BaselinePublic(BaseModel):
    learner_id: str = Field(..., description="The stored pseudonym.")
    answers: int
    correct_rate: float
    skills: list[SkillBaselinePublic]
    stored: int = Field(..., description="Answers stored now (resent ones are skipped).")
    clone: BaselineClonePublic
    training: BaselineTrainingPublic
