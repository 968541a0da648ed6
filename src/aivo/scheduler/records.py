"""Scheduler state in the registry: one row per firing (`scheduler_runs`) and run-time schedule
overrides (`scheduler_overrides`).

`claim_firing` inserts the (job, scheduled time) row with ON CONFLICT DO NOTHING: the process
whose insert lands runs the firing; any other process that fires the same job at the same time
finds the row taken and does nothing. That is what makes "no job runs twice" hold even when two
scheduler processes overlap (during a leadership hand-over, say).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.registry.db import dialect_insert
from aivo.registry.records import Record
from aivo.registry.tables import SchedulerOverride, SchedulerRun


@dataclass(frozen=True)
class SchedulerRunRecord(Record):
    id: int
    job_name: str
    scheduled_for: datetime
    started_at: datetime
    finished_at: datetime | None
    status: str  # running | succeeded | skipped | failed
    instance_id: str
    forced: bool
    outcome: dict[str, Any]
    error: str | None


def _record(row) -> SchedulerRunRecord:
    return SchedulerRunRecord(id=row.id, job_name=row.job_name, scheduled_for=row.scheduled_for,
                              started_at=row.started_at, finished_at=row.finished_at, status=row.status,
                              instance_id=row.instance_id, forced=bool(row.forced), outcome=dict(row.outcome or {}),
                              error=row.error)


def claim_firing(*, session: Session, job_name: str, scheduled_for: datetime, instance_id: str, forced: bool = False,
                 clock: Clock = SYSTEM_CLOCK) -> int | None:
    """The new run's id, or None when another process already took this firing."""
    table = SchedulerRun.__table__
    stmt = (dialect_insert(session, table)
            .values(job_name=job_name, scheduled_for=scheduled_for, started_at=clock.now(), status="running",
                    instance_id=instance_id, forced=forced, outcome={})
            .on_conflict_do_nothing(index_elements=["job_name", "scheduled_for"])
            .returning(table.c.id))
    return session.scalar(stmt)


def finish_firing(*, session: Session, run_id: int, status: str, outcome: dict[str, Any] | None = None,
                  error: str | None = None, clock: Clock = SYSTEM_CLOCK) -> SchedulerRunRecord:
    row = session.get(SchedulerRun, run_id)
    row.status, row.finished_at, row.outcome, row.error = status, clock.now(), dict(outcome or {}), error
    session.flush()
    return _record(row)


def list_scheduler_runs(*, session: Session, job_name: str | None = None, limit: int = 50) -> list[SchedulerRunRecord]:
    """Newest first."""
    stmt = sa.select(SchedulerRun).order_by(SchedulerRun.started_at.desc(), SchedulerRun.id.desc()).limit(limit)
    if job_name is not None:
        stmt = stmt.where(SchedulerRun.job_name == job_name)
    return [_record(r) for r in session.scalars(stmt)]


def last_runs(*, session: Session) -> dict[str, SchedulerRunRecord]:
    """job name -> its latest run."""
    latest = (sa.select(SchedulerRun.job_name, sa.func.max(SchedulerRun.id).label("id"))
              .group_by(SchedulerRun.job_name).subquery())
    rows = session.scalars(sa.select(SchedulerRun).join(latest, SchedulerRun.id == latest.c.id))
    return {row.job_name: _record(row) for row in rows}


def has_firing(*, session: Session, job_name: str, scheduled_for: datetime) -> bool:
    return session.scalar(sa.select(SchedulerRun.id).where(SchedulerRun.job_name == job_name,
                                                           SchedulerRun.scheduled_for == scheduled_for)) is not None


# --- overrides -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class OverrideRecord(Record):
    job_id: str
    trigger: dict[str, Any]
    enabled: bool
    updated_by: str
    updated_at: datetime


def get_overrides(*, session: Session) -> dict[str, OverrideRecord]:
    return {row.job_id: OverrideRecord(row.job_id, dict(row.trigger or {}), bool(row.enabled), row.updated_by,
                                       row.updated_at)
            for row in session.scalars(sa.select(SchedulerOverride))}


def set_override(*, session: Session, job_id: str, trigger: dict[str, Any] | None, enabled: bool, updated_by: str,
                 clock: Clock = SYSTEM_CLOCK) -> OverrideRecord:
    row = session.get(SchedulerOverride, job_id)
    if row is None:
        row = SchedulerOverride(job_id=job_id)
        session.add(row)
    row.trigger, row.enabled, row.updated_by, row.updated_at = dict(trigger or {}), enabled, updated_by, clock.now()
    session.flush()
    return OverrideRecord(row.job_id, dict(row.trigger), bool(row.enabled), row.updated_by, row.updated_at)


def delete_override(*, session: Session, job_id: str) -> bool:
    return session.execute(sa.delete(SchedulerOverride).where(SchedulerOverride.job_id == job_id)).rowcount == 1
