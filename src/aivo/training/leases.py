"""Leases: how workers own jobs, and how one process owns a duty (the scheduler).

Job leases
- `claim_next_job` takes the best queued job (highest priority, then oldest) and moves it to
  `validating` under a lease of `lease_s` seconds. PostgreSQL: `SELECT ... FOR UPDATE SKIP
  LOCKED`, so concurrent workers each get a different row without waiting. SQLite: the write
  transaction (BEGIN IMMEDIATE) already serializes writers. On both, the UPDATE is conditional
  (`WHERE status = 'queued'`) and its row count is checked: a job is claimed once, never twice.
  `claim_job` claims one named job the same way (a command that runs the job it queued).
- `heartbeat` renews the lease and reports whether the job was cancelled. It only succeeds while
  the worker still owns the job: a worker that lost its lease learns it and stops.
- `finish_job` and `set_job_status` also require ownership, so a worker whose lease expired can
  never overwrite the fate the reaper gave its job.
- `reap_expired_jobs`: a validating/running job whose lease ran out belongs to a dead (or stuck)
  worker. It is requeued while attempts remain (`max_attempts`, default 1), otherwise failed
  with an error naming the worker and its last heartbeat; one that was asked to stop is cancelled.

Named leases (`service_leases`): `acquire_lease(name, owner, ttl)` succeeds when the row is free,
expired, or already ours; `release_lease` gives it back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.registry.db import dialect_insert, dialect_name
from aivo.training.jobs import TrainerJobRecord, get_job
from aivo.registry.tables import ACTIVE_JOB_STATUSES, ServiceLease, TrainerJob

log = logging.getLogger(__name__)


def claim_next_job(*, session: Session, worker_id: str, lease_s: float, kinds: tuple[str, ...] | None = None,
                   clock: Clock = SYSTEM_CLOCK) -> TrainerJobRecord | None:
    """The next queued job, now `validating` and leased to `worker_id`; None when there is none."""
    stmt = (sa.select(TrainerJob.id).where(TrainerJob.status == "queued", TrainerJob.cancel_requested.is_(False))
            .order_by(TrainerJob.priority.desc(), TrainerJob.id).limit(1))
    if kinds is not None:
        stmt = stmt.where(TrainerJob.kind.in_(kinds))
    if dialect_name(session) == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    job_id = session.scalar(stmt)
    if job_id is None:
        return None
    # None only if another worker took it between the select and the update (cannot happen, but check)
    return claim_job(session=session, job_id=job_id, worker_id=worker_id, lease_s=lease_s, clock=clock)


def claim_job(*, session: Session, job_id: int, worker_id: str, lease_s: float, kinds: tuple[str, ...] | None = None,
              clock: Clock = SYSTEM_CLOCK) -> TrainerJobRecord | None:
    """Job `job_id`, now `validating` and leased to `worker_id`, if it was still queued (and of one
    of `kinds`); None otherwise. The UPDATE is conditional: a job is claimed once, never twice."""
    now = clock.now()
    conditions = [TrainerJob.id == job_id, TrainerJob.status == "queued", TrainerJob.cancel_requested.is_(False)]
    if kinds is not None:
        conditions.append(TrainerJob.kind.in_(kinds))
    claimed = session.execute(
        sa.update(TrainerJob).where(*conditions)
        .values(status="validating", worker_id=worker_id, lease_expires_at=now + timedelta(seconds=lease_s),
                heartbeat_at=now, attempts=TrainerJob.attempts + 1,
                started_at=sa.func.coalesce(TrainerJob.started_at, now), updated_at=now,
                progress={"stage": "validating", "fraction": 0.0})
        .execution_options(synchronize_session=False)).rowcount
    if claimed != 1:
        return None
    return get_job(session=session, job_id=job_id)


@dataclass(frozen=True)
class Heartbeat:
    owned: bool  # False: the lease was lost (expired and reaped, or the job finished elsewhere)
    cancel_requested: bool


def _update_owned(session: Session, *, job_id: int, worker_id: str, values: dict[str, Any]) -> bool:
    """Write `values` to the job if this worker still holds it (active, under its id); False when not."""
    return session.execute(
        sa.update(TrainerJob).where(TrainerJob.id == job_id, TrainerJob.worker_id == worker_id,
                                    TrainerJob.status.in_(ACTIVE_JOB_STATUSES))
        .values(**values).execution_options(synchronize_session=False)).rowcount == 1


def heartbeat(*, session: Session, job_id: int, worker_id: str, lease_s: float,
              progress: dict[str, Any] | None = None, clock: Clock = SYSTEM_CLOCK) -> Heartbeat:
    now = clock.now()
    values: dict[str, Any] = {"lease_expires_at": now + timedelta(seconds=lease_s), "heartbeat_at": now}
    if progress is not None:
        values["progress"] = progress
    owned = _update_owned(session, job_id=job_id, worker_id=worker_id, values=values)
    cancel = bool(session.scalar(sa.select(TrainerJob.cancel_requested).where(TrainerJob.id == job_id)))
    return Heartbeat(owned=owned, cancel_requested=cancel)


def set_job_status(*, session: Session, job_id: int, worker_id: str, status: str,
                   progress: dict[str, Any] | None = None, clock: Clock = SYSTEM_CLOCK) -> bool:
    """validating -> running (owner only). Returns False when the worker no longer owns the job."""
    values: dict[str, Any] = {"status": status, "updated_at": clock.now()}
    if progress is not None:
        values["progress"] = progress
    return _update_owned(session, job_id=job_id, worker_id=worker_id, values=values)


def finish_job(*, session: Session, job_id: int, worker_id: str, status: str, result: dict[str, Any] | None = None,
               error: str | None = None, requeue: bool = False, log_lines: list[dict[str, Any]] | None = None,
               clock: Clock = SYSTEM_CLOCK, **fields: Any) -> bool:
    """End the worker's hold on a job: succeeded, failed, cancelled, or back to queued (`requeue`,
    e.g. on a graceful shutdown). Extra `fields` (candidate_version, evaluation, ...) are stored
    with it; `log_lines` (the run's progress messages) stay in its progress as `log`. Returns False when the
    worker had already lost the job (nothing is written)."""
    now = clock.now()
    values: dict[str, Any] = {"updated_at": now, "lease_expires_at": None, **fields}
    kept = {"log": list(log_lines)} if log_lines else {}
    if requeue:
        values.update(status="queued", worker_id=None, error=error,
                      progress={"stage": "queued", "fraction": 0.0, "message": error or "requeued", **kept})
    else:
        values.update(status=status, finished_at=now, error=error,
                      progress={"stage": status, "fraction": 1.0 if status == "succeeded" else None, **kept})
    if result is not None:
        values["result"] = result
    done = _update_owned(session, job_id=job_id, worker_id=worker_id, values=values)
    if not done:
        log.warning("job %d: worker %s no longer holds it; its outcome (%s) is discarded", job_id, worker_id,
                    "requeue" if requeue else status)
    return done


def reap_expired_jobs(*, session: Session, clock: Clock = SYSTEM_CLOCK) -> list[TrainerJobRecord]:
    """Jobs whose worker stopped renewing the lease: requeued while attempts remain, else failed
    (cancelled when a stop was requested). Returns the jobs it changed."""
    now = clock.now()
    stmt = sa.select(TrainerJob).where(TrainerJob.status.in_(ACTIVE_JOB_STATUSES), TrainerJob.lease_expires_at < now)
    if dialect_name(session) == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    changed = []
    for row in session.scalars(stmt).all():
        last = row.heartbeat_at.isoformat() if row.heartbeat_at else "never"
        why = f"the lease of worker {row.worker_id} expired (last heartbeat {last}); the worker died or stalled"
        if row.cancel_requested:
            row.status, row.finished_at, row.error = "cancelled", now, why
        elif row.attempts < row.max_attempts:
            row.status, row.error = "queued", why
            row.progress = {"stage": "queued", "fraction": 0.0, "message": f"requeued: {why}"}
        else:
            row.status, row.finished_at, row.error = "failed", now, why
        if row.status != "queued":
            row.progress = {**(row.progress or {}), "stage": row.status}
        row.worker_id, row.lease_expires_at, row.updated_at = None, None, now
        log.warning("job %d (%s) -> %s: %s", row.id, row.model_id, row.status, why)
        changed.append(row.id)
    session.flush()
    return [get_job(session=session, job_id=job_id) for job_id in changed]


# --- named service leases --------------------------------------------------------------------

@dataclass(frozen=True)
class LeaseRecord:
    name: str
    owner: str
    acquired_at: datetime
    renewed_at: datetime
    expires_at: datetime
    details: dict[str, Any]


def acquire_lease(*, session: Session, name: str, owner: str, ttl_s: float, details: dict[str, Any] | None = None,
                  clock: Clock = SYSTEM_CLOCK) -> bool:
    """Take or renew lease `name` for `owner`. True when `owner` holds it afterwards."""
    now = clock.now()
    expires = now + timedelta(seconds=ttl_s)
    table = ServiceLease.__table__
    inserted = session.execute(
        dialect_insert(session, table).values(name=name, owner=owner, acquired_at=now, renewed_at=now,
                                              expires_at=expires, details=dict(details or {}))
        .on_conflict_do_nothing(index_elements=["name"])).rowcount
    if inserted == 1:
        return True
    renewed = session.execute(
        sa.update(table).where(table.c.name == name, table.c.owner == owner)
        .values(renewed_at=now, expires_at=expires)).rowcount
    if renewed == 1:
        return True
    taken = session.execute(
        sa.update(table).where(table.c.name == name, table.c.expires_at < now)
        .values(owner=owner, acquired_at=now, renewed_at=now, expires_at=expires,
                details=dict(details or {}))).rowcount
    return taken == 1


def release_lease(*, session: Session, name: str, owner: str) -> bool:
    table = ServiceLease.__table__
    return session.execute(sa.delete(table).where(table.c.name == name, table.c.owner == owner)).rowcount == 1


def get_lease(*, session: Session, name: str) -> LeaseRecord | None:
    row = session.get(ServiceLease, name)
    if row is None:
        return None
    return LeaseRecord(name=row.name, owner=row.owner, acquired_at=row.acquired_at, renewed_at=row.renewed_at,
                       expires_at=row.expires_at, details=dict(row.details or {}))
