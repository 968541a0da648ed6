"""Trainer jobs in the registry: create, read, list, cancel (repository functions, session injected).

Lifecycle (persisted in `trainer_jobs.status`):

    queued -> validating -> running -> succeeded | failed | cancelled
       \\-> cancelled (before a worker took it)

Workers move jobs along with the lease functions in `aivo.training.leases`. A model has at most
one open (queued, validating or running) job: the database refuses a second one, so a model
already training is never started again, whichever process asks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError as DBIntegrityError
from sqlalchemy.orm import Session

from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.errors import ConflictError, DataError, NotFoundError
from aivo.registry.tables import Learner
from aivo.registry.records import Record
from aivo.training.datasheet import Datasheet
from aivo.registry.tables import JOB_STATUSES, OPEN_JOB_STATUSES, TrainerJob

PRIORITIES = {"low": 0, "normal": 1, "high": 2}
PRIORITY_NAMES = {v: k for k, v in PRIORITIES.items()}
TERMINAL_STATUSES = ("succeeded", "failed", "cancelled")
MAX_PAGE = 500


@dataclass(frozen=True)
class TrainerJobRecord(Record):
    id: int
    kind: str
    model_id: str
    learner_id: str | None  # pseudonym, for per-learner jobs
    parent_job_id: int | None  # evaluation jobs: the job whose candidate they evaluate
    status: str
    priority: str  # low | normal | high
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

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_JOB_STATUSES

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True)
class JobPage(Record):
    jobs: list[TrainerJobRecord]
    total: int
    limit: int
    offset: int


def _select():
    return sa.select(TrainerJob, Learner.pseudonym).outerjoin(Learner, Learner.id == TrainerJob.learner_id)


def job_record(row: TrainerJob, pseudonym: str | None) -> TrainerJobRecord:
    return TrainerJobRecord(
        id=row.id, kind=row.kind, model_id=row.model_id, learner_id=pseudonym, parent_job_id=row.parent_job_id,
        status=row.status, priority=PRIORITY_NAMES.get(row.priority, str(row.priority)), reason=row.reason or "",
        tenant=row.tenant, config=dict(row.config or {}), policy=dict(row.policy or {}),
        datasheet=dict(row.datasheet or {}), created_by=row.created_by, created_at=row.created_at,
        updated_at=row.updated_at, started_at=row.started_at, finished_at=row.finished_at, attempts=row.attempts,
        max_attempts=row.max_attempts, worker_id=row.worker_id, lease_expires_at=row.lease_expires_at,
        heartbeat_at=row.heartbeat_at, cancel_requested=bool(row.cancel_requested),
        progress=dict(row.progress or {}), result=dict(row.result or {}), error=row.error,
        candidate_version=row.candidate_version,
        evaluation=dict(row.evaluation) if row.evaluation is not None else None,
        evaluation_passed=row.evaluation_passed, promoted_version=row.promoted_version, promoted_at=row.promoted_at)


def parse_priority(priority: str | int) -> int:
    if isinstance(priority, int) and not isinstance(priority, bool) and priority in PRIORITY_NAMES:
        return priority
    value = PRIORITIES.get(str(priority).strip().lower())
    if value is None:
        raise DataError(f"priority must be one of {', '.join(PRIORITIES)}, got {priority!r}")
    return value


def open_job_for_model(*, session: Session, model_id: str) -> TrainerJobRecord | None:
    row = session.execute(_select().where(TrainerJob.model_id == model_id,
                                          TrainerJob.status.in_(OPEN_JOB_STATUSES))).first()
    return None if row is None else job_record(row[0], row[1])


def create_job(*, session: Session, kind: str, model_id: str, datasheet: Datasheet, created_by: str,
               config: dict[str, Any] | None = None, policy: dict[str, Any] | None = None,
               priority: str | int = "normal", reason: str = "", tenant: str | None = None,
               learner_pk: int | None = None, parent_job_id: int | None = None, max_attempts: int = 1,
               clock: Clock = SYSTEM_CLOCK) -> TrainerJobRecord:
    """Queue a job. Raises `ConflictError` when `model_id` already has an open job."""
    if not isinstance(datasheet, Datasheet):
        raise TypeError("create_job needs a validated Datasheet (aivo.training.datasheet.parse_datasheet)")
    if max_attempts < 1:
        raise DataError(f"max_attempts must be at least 1, got {max_attempts}")
    now = clock.now()
    row = TrainerJob(kind=kind, model_id=model_id, learner_id=learner_pk, parent_job_id=parent_job_id,
                     status="queued", priority=parse_priority(priority), reason=reason or "", tenant=tenant,
                     config=dict(config or {}), policy=dict(policy or {}), datasheet=datasheet.to_dict(),
                     created_by=created_by, created_at=now, updated_at=now, attempts=0, max_attempts=max_attempts,
                     cancel_requested=False, progress={"stage": "queued", "fraction": 0.0}, result={})
    try:
        with session.begin_nested():
            session.add(row)
    except DBIntegrityError as exc:
        existing = open_job_for_model(session=session, model_id=model_id)
        if existing is None:  # the constraint that failed was not the one-open-job rule
            raise
        raise ConflictError(f"{model_id} already has an open job ({existing.id}, {existing.status}); "
                            "a model that is already training is not started again") from exc
    pseudonym = session.scalar(sa.select(Learner.pseudonym).where(Learner.id == learner_pk)) if learner_pk else None
    return job_record(row, pseudonym)


def get_job(*, session: Session, job_id: int) -> TrainerJobRecord:
    row = session.execute(_select().where(TrainerJob.id == job_id)).first()
    if row is None:
        raise NotFoundError(f"trainer job {job_id} does not exist")
    return job_record(row[0], row[1])


def list_jobs(*, session: Session, status: str | None = None, model_id: str | None = None,
              kind: str | None = None, tenant: str | None = None, visible_to_tenant: str | None = None,
              limit: int = 50, offset: int = 0) -> JobPage:
    """Newest first, with the total count for pagination. `visible_to_tenant`: that tenant's jobs
    and the jobs of no tenant (the Main Brain's)."""
    if status is not None and status not in JOB_STATUSES:
        raise DataError(f"status must be one of {', '.join(JOB_STATUSES)}, got {status!r}")
    if not 1 <= limit <= MAX_PAGE or offset < 0:
        raise DataError(f"limit must be 1..{MAX_PAGE} and offset >= 0")
    filters = []
    if status is not None:
        filters.append(TrainerJob.status == status)
    if model_id is not None:
        filters.append(TrainerJob.model_id == model_id)
    if kind is not None:
        filters.append(TrainerJob.kind == kind)
    if tenant is not None:
        filters.append(TrainerJob.tenant == tenant)
    if visible_to_tenant is not None:
        filters.append(sa.or_(TrainerJob.tenant == visible_to_tenant, TrainerJob.tenant.is_(None)))
    total = session.scalar(sa.select(sa.func.count()).select_from(TrainerJob).where(*filters)) or 0
    rows = session.execute(_select().where(*filters).order_by(TrainerJob.id.desc()).limit(limit).offset(offset))
    return JobPage(jobs=[job_record(r, p) for r, p in rows], total=int(total), limit=limit, offset=offset)


def cancel_job(*, session: Session, job_id: int, clock: Clock = SYSTEM_CLOCK) -> TrainerJobRecord:
    """A queued job is cancelled at once; a validating or running one is asked to stop (its worker
    sees the flag at its next heartbeat, within seconds, and marks it cancelled)."""
    row = session.get(TrainerJob, job_id, with_for_update=True)
    if row is None:
        raise NotFoundError(f"trainer job {job_id} does not exist")
    if row.status in TERMINAL_STATUSES:
        raise ConflictError(f"trainer job {job_id} has already finished ({row.status})")
    now = clock.now()
    if row.status == "queued":
        row.status, row.finished_at = "cancelled", now
        row.progress = {**(row.progress or {}), "stage": "cancelled", "message": "cancelled before it started"}
    row.cancel_requested = True
    row.updated_at = now
    session.flush()
    return get_job(session=session, job_id=job_id)


def update_job_fields(*, session: Session, job_id: int, clock: Clock = SYSTEM_CLOCK, **values: Any) -> None:
    """Set columns of a job (evaluation results, promotion) outside the worker's lease."""
    values["updated_at"] = clock.now()
    session.execute(sa.update(TrainerJob).where(TrainerJob.id == job_id).values(**values)
                    .execution_options(synchronize_session=False))


def last_finished_training(*, session: Session, model_id: str, kinds: tuple[str, ...] | None = None) -> datetime | None:
    """When `model_id` last finished a training job successfully (min-interval guard)."""
    stmt = sa.select(sa.func.max(TrainerJob.finished_at)).where(TrainerJob.model_id == model_id,
                                                               TrainerJob.status == "succeeded")
    if kinds is not None:
        stmt = stmt.where(TrainerJob.kind.in_(kinds))
    return session.scalar(stmt)


def models_training(*, session: Session) -> list[TrainerJobRecord]:
    """Open jobs that train a model (evaluations left out), oldest first."""
    rows = session.execute(_select().where(TrainerJob.status.in_(OPEN_JOB_STATUSES),
                                           TrainerJob.kind != "evaluation").order_by(TrainerJob.id))
    return [job_record(r, p) for r, p in rows]
