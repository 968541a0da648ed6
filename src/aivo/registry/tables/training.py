"""Tables of continuous training, defined on the registry's declarative Base (migration 0005).

- `trainer_jobs`: a job is a row with a lease. Workers claim queued rows atomically
  (`FOR UPDATE SKIP LOCKED` on PostgreSQL, a conditional UPDATE inside SQLite's write lock),
  renew `lease_expires_at` by heartbeat, and finish only while they still hold the lease.
  At most one open (queued/validating/running) job per `model_id`: a partial unique index.
- `pipeline_runs`: every continuous-training pipeline run, its data, search, metrics and gate.
- `scheduler_runs`: every scheduled (or manual) scheduler execution; unique on
  (job_name, scheduled_for), so two scheduler processes can never both run the same firing.
- `service_leases`: named leases (the scheduler's leadership); `scheduler_overrides`: schedules
  changed at run time.
- `drift_references`, `drift_reports`: what a model saw at promotion, and each drift check.
- `learner_snapshots`: the adaptive orchestrator's last analysis of each learner.

Per-learner rows reference `learners.id` with ON DELETE CASCADE (erasure and export cover them).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from aivo.registry.tables.base import Base
from aivo.registry.types import BigIntPK, JSONDict, UTCDateTime

JOB_STATUSES = ("queued", "validating", "running", "succeeded", "failed", "cancelled")
OPEN_JOB_STATUSES = ("queued", "validating", "running")
ACTIVE_JOB_STATUSES = ("validating", "running")  # held by a worker under a lease
PIPELINE_STATUSES = ("running", "succeeded", "failed", "cancelled")
SCHEDULER_RUN_STATUSES = ("running", "succeeded", "skipped", "failed")

_OPEN_SQL = "status IN ('queued', 'validating', 'running')"


class TrainerJob(Base):
    __tablename__ = "trainer_jobs"
    __table_args__ = (
        sa.CheckConstraint("status IN ('queued', 'validating', 'running', 'succeeded', 'failed', 'cancelled')",
                           name="status"),
        # A model that already has an open job is not started again (enforced by the database).
        sa.Index("uq_trainer_jobs_one_open_per_model", "model_id", unique=True,
                 sqlite_where=sa.text(_OPEN_SQL), postgresql_where=sa.text(_OPEN_SQL)),
        # Claim order: highest priority first, then oldest.
        sa.Index("ix_trainer_jobs_claim", "status", "priority", "id"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(32))  # main_brain | learner_model | federated | evaluation
    model_id: Mapped[str] = mapped_column(sa.String(128), index=True)
    learner_id: Mapped[int | None] = mapped_column(sa.ForeignKey("learners.id", ondelete="CASCADE"), index=True)
    parent_job_id: Mapped[int | None] = mapped_column(sa.ForeignKey("trainer_jobs.id", ondelete="CASCADE"),
                                                      index=True)
    status: Mapped[str] = mapped_column(sa.String(16), default="queued")
    priority: Mapped[int] = mapped_column(sa.SmallInteger, default=1)  # 0 low, 1 normal, 2 high
    reason: Mapped[str] = mapped_column(sa.Text, default="")
    tenant: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSONDict, default=dict)
    policy: Mapped[dict[str, Any]] = mapped_column(JSONDict, default=dict)
    datasheet: Mapped[dict[str, Any]] = mapped_column(JSONDict, default=dict)
    created_by: Mapped[str] = mapped_column(sa.String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(sa.Integer, default=1)
    worker_id: Mapped[str | None] = mapped_column(sa.String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cancel_requested: Mapped[bool] = mapped_column(sa.Boolean, default=False, server_default=sa.false())
    progress: Mapped[dict[str, Any]] = mapped_column(JSONDict, default=dict)  # stage, fraction, message
    result: Mapped[dict[str, Any]] = mapped_column(JSONDict, default=dict)
    error: Mapped[str | None] = mapped_column(sa.Text)
    candidate_version: Mapped[str | None] = mapped_column(sa.String(64))
    evaluation: Mapped[dict[str, Any] | None] = mapped_column(JSONDict)
    evaluation_passed: Mapped[bool | None] = mapped_column(sa.Boolean)
    promoted_version: Mapped[str | None] = mapped_column(sa.String(64))
    promoted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class PipelineRun(Base):
    __tablename__ = "pipeline_runs"
    __table_args__ = (
        sa.CheckConstraint("status IN ('running', 'succeeded', 'failed', 'cancelled')", name="status"),
        sa.Index("ix_pipeline_runs_model_id_started_at", "model_id", "started_at"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    job_id: Mapped[int | None] = mapped_column(sa.ForeignKey("trainer_jobs.id", ondelete="SET NULL"), index=True)
    model_id: Mapped[str] = mapped_column(sa.String(128))
    trigger: Mapped[str] = mapped_column(sa.Text, default="")
    status: Mapped[str] = mapped_column(sa.String(16), default="running")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    data_hash: Mapped[str | None] = mapped_column(sa.String(64))
    split: Mapped[dict[str, Any]] = mapped_column(JSONDict, default=dict)
    search: Mapped[dict[str, Any]] = mapped_column(JSONDict, default=dict)  # Optuna trials and best values
    training: Mapped[dict[str, Any]] = mapped_column(JSONDict, default=dict)  # epochs, early stop, timings
    test_metrics: Mapped[dict[str, Any]] = mapped_column(JSONDict, default=dict)
    active_version: Mapped[str | None] = mapped_column(sa.String(64))
    active_test_metrics: Mapped[dict[str, Any] | None] = mapped_column(JSONDict)
    relative_improvement: Mapped[float | None] = mapped_column(sa.Float)
    candidate_version: Mapped[str | None] = mapped_column(sa.String(64))
    promoted: Mapped[bool] = mapped_column(sa.Boolean, default=False, server_default=sa.false())
    decision: Mapped[str] = mapped_column(sa.Text, default="")
    error: Mapped[str | None] = mapped_column(sa.Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSONDict, default=dict)


class SchedulerRun(Base):
    __tablename__ = "scheduler_runs"
    __table_args__ = (
        sa.CheckConstraint("status IN ('running', 'succeeded', 'skipped', 'failed')", name="status"),
        # One execution per firing, whichever scheduler process gets there first.
        sa.UniqueConstraint("job_name", "scheduled_for"),
        sa.Index("ix_scheduler_runs_job_name_started_at", "job_name", "started_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    job_name: Mapped[str] = mapped_column(sa.String(64))
    scheduled_for: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(sa.String(16), default="running")
    instance_id: Mapped[str] = mapped_column(sa.String(128))
    forced: Mapped[bool] = mapped_column(sa.Boolean, default=False, server_default=sa.false())
    outcome: Mapped[dict[str, Any]] = mapped_column(JSONDict, default=dict)
    error: Mapped[str | None] = mapped_column(sa.Text)


class ServiceLease(Base):
    """A named lease: whoever holds an unexpired row is the one process doing that duty."""

    __tablename__ = "service_leases"

    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(sa.String(128))
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime())
    renewed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    details: Mapped[dict[str, Any]] = mapped_column(JSONDict, default=dict)


class SchedulerOverride(Base):
    """A schedule changed at run time (PUT /v1/scheduler/jobs/{id}); it wins over the settings."""

    __tablename__ = "scheduler_overrides"

    job_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    trigger: Mapped[dict[str, Any]] = mapped_column(JSONDict, default=dict)  # {"cron": ...} | {"interval_hours": ...}
    enabled: Mapped[bool] = mapped_column(sa.Boolean, default=True, server_default=sa.true())
    updated_by: Mapped[str] = mapped_column(sa.String(128))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DriftReference(Base):
    """What a model version saw when it was promoted: the baseline drift is measured against."""

    __tablename__ = "drift_references"
    __table_args__ = (sa.UniqueConstraint("model_id", "version"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    model_id: Mapped[str] = mapped_column(sa.String(128))
    version: Mapped[str] = mapped_column(sa.String(64))
    source: Mapped[str] = mapped_column(sa.String(64))  # pipeline_test_split | interactions_before_activation
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    profile: Mapped[dict[str, Any]] = mapped_column(JSONDict, default=dict)


class DriftReport(Base):
    __tablename__ = "drift_reports"
    __table_args__ = (sa.Index("ix_drift_reports_model_id_computed_at", "model_id", "computed_at"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    model_id: Mapped[str] = mapped_column(sa.String(128))
    version: Mapped[str | None] = mapped_column(sa.String(64))
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    window_start: Mapped[datetime | None] = mapped_column(UTCDateTime())
    window_end: Mapped[datetime | None] = mapped_column(UTCDateTime())
    score: Mapped[float | None] = mapped_column(sa.Float)  # None: not enough recent data
    threshold: Mapped[float] = mapped_column(sa.Float)
    drifted: Mapped[bool] = mapped_column(sa.Boolean, default=False, server_default=sa.false())
    signals: Mapped[dict[str, Any]] = mapped_column(JSONDict, default=dict)
    action: Mapped[dict[str, Any]] = mapped_column(JSONDict, default=dict)  # retraining job or why not
    details: Mapped[dict[str, Any]] = mapped_column(JSONDict, default=dict)


class LearnerSnapshot(Base):
    """The orchestrator's last analysis of a learner: decisions per skill and predicted mastery."""

    __tablename__ = "learner_snapshots"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    learner_id: Mapped[int] = mapped_column(sa.ForeignKey("learners.id", ondelete="CASCADE"), unique=True)
    analysed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    interactions_seen: Mapped[int] = mapped_column(sa.BigInteger)
    main_version: Mapped[str | None] = mapped_column(sa.String(64))
    decisions: Mapped[dict[str, Any]] = mapped_column(JSONDict, default=dict)  # skill -> decision
    mastery: Mapped[dict[str, Any]] = mapped_column(JSONDict, default=dict)  # skill -> predicted mastery
    last_job_id: Mapped[int | None] = mapped_column(sa.ForeignKey("trainer_jobs.id", ondelete="SET NULL"))
