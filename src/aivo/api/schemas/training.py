"""Request and response models of the scheduler, trainer-job and drift endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from aivo.api.schemas.common import Id, RequestModel
from aivo.utils import JsonInt

Priority = Literal["low", "normal", "high"]


class DatasheetIn(RequestModel):
    """What the training data is; every job needs one (after "Datasheets for Datasets")."""

    source: str = Field(..., min_length=1, max_length=4000, examples=["district-7 SIS export, 2025-26 school year"])
    license: str = Field(..., min_length=1, max_length=4000, examples=["district data-processing agreement §4"])
    collection_process: str = Field(..., min_length=1, max_length=4000,
                                    examples=["attempts logged by the practice app, with parental consent"])
    pii_handling: str = Field(..., min_length=1, max_length=4000,
                              examples=["ids pseudonymized (HMAC); e-mails, phones and names scrubbed"])
    intended_use: str = Field(..., min_length=1, max_length=4000,
                              examples=["knowledge tracing for practice recommendations; not for grading"])
    redaction: str | None = Field(None, max_length=4000, examples=["pii_removed"])
    known_limitations: str | None = Field(None, max_length=4000)
    contact: str | None = Field(None, max_length=4000)


class TrainerJobCreate(RequestModel):
    kind: Literal["main_brain", "learner_model", "federated"] = "main_brain"
    datasheet: DatasheetIn
    config: dict[str, Any] = Field(default_factory=dict, description=(
        "main_brain: seed, hpo_trials, hpo_timeout_s, improvement_threshold, promote (gate|never), fractions, "
        "split_salt, tenant, since, until, brain (BrainConfig fields)."))
    policy: dict[str, Any] = Field(default_factory=dict, description=(
        'Evaluation harness: {"thresholds": {"auc": 0.7, "subgroup_gap": 0.1}, "group_by": ["accommodation"]}; '
        "tutor models: pedagogy_score, safety_score."))
    priority: Priority = "normal"
    reason: str = Field("", max_length=1000)
    learner_id: Id | None = Field(None, description="learner_model jobs: the learner's id (pseudonymized by the "
                                                  "server).")
    max_attempts: JsonInt = Field(1, ge=1, le=5, description="Requeue after a dead worker this many times in all.")


class TrainerJobPublic(BaseModel):
    id: int
    kind: str
    model_id: str
    learner_id: str | None = Field(None, description="The learner's pseudonym (learner_model jobs).")
    parent_job_id: int | None
    status: str = Field(..., description="queued, validating, running, succeeded, failed or cancelled.")
    priority: str
    reason: str
    tenant: str | None
    config: dict[str, Any]
    policy: dict[str, Any]
    datasheet: dict[str, Any]
    created_by: str
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    max_attempts: int
    worker_id: str | None
    lease_expires_at: datetime | None
    heartbeat_at: datetime | None
    cancel_requested: bool
    progress: dict[str, Any]
    result: dict[str, Any]
    error: str | None
    candidate_version: str | None
    evaluation: dict[str, Any] | None
    evaluation_passed: bool | None
    promoted_version: str | None
    promoted_at: datetime | None


class TrainerJobPage(BaseModel):
    jobs: list[TrainerJobPublic]
    total: int
    limit: int
    offset: int


class EvaluateCreate(RequestModel):
    policy: dict[str, Any] | None = Field(None, description="Thresholds to apply (default: the job's own policy).")


class EvaluationPublic(BaseModel):
    job_id: int
    status: Literal["not_evaluated", "pending", "evaluated"]
    passed: bool | None
    evaluation: dict[str, Any] | None
    evaluation_job: TrainerJobPublic | None


class PromoteJobCreate(RequestModel):
    reason: str | None = Field(None, max_length=1000, description="Kept in the audit log.")


class TriggerResponse(BaseModel):
    status: Literal["queued"] = "queued"
    model_id: str
    reason: str
    job: TrainerJobPublic
    timestamp: datetime


class ScheduleUpdate(RequestModel):
    cron: str | None = Field(None, max_length=200, examples=["0 2 * * *"],
                             description="Standard 5-field crontab in AIVO_TIMEZONE (day of week 0 = Sunday).")
    interval_hours: float | None = Field(None, gt=0, le=24 * 366)
    enabled: bool | None = None
    reset: bool = Field(False, description="Forget the override: back to the settings.")


class ScheduleOverridePublic(BaseModel):
    job_id: str
    trigger: dict[str, Any]
    enabled: bool
    reset: bool = False


class DriftReportPublic(BaseModel):
    id: int
    model_id: str
    version: str | None
    computed_at: datetime
    window_start: datetime | None
    window_end: datetime | None
    score: float | None = Field(..., description="Null when too few recent interactions to measure.")
    threshold: float
    drifted: bool
    signals: dict[str, Any] = Field(..., description="input, prediction, performance, score and per-statistic "
                                                     "components (PSI, Jensen-Shannon, KS).")
    action: dict[str, Any] = Field(..., description="Whether retraining was scheduled, and why not.")
    details: dict[str, Any]


class DriftPublic(BaseModel):
    model_id: str
    threshold: float
    latest: DriftReportPublic | None
    reports: list[DriftReportPublic]
