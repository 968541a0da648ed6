"""Pipeline runs in the registry: every continuous-training run is recorded, start to end.

A run row is written when the pipeline starts (status `running`) and completed when it ends
(`succeeded`, `failed` or `cancelled`), so a crash leaves a visible `running` row behind rather
than nothing. Model ids name model families: `aivo-main-brain` is the Main Brain.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.errors import NotFoundError
from aivo.registry.records import Record
from aivo.registry.tables import PipelineRun

MAIN_BRAIN_MODEL_ID = "aivo-main-brain"
FEDERATED_MODEL_ID = "aivo-federated-aggregation"
LEARNER_MODEL_PREFIX = "learner:"


def learner_model_id(pseudonym: str) -> str:
    return f"{LEARNER_MODEL_PREFIX}{pseudonym}"


@dataclass(frozen=True)
class PipelineRunRecord(Record):
    id: int
    job_id: int | None
    model_id: str
    trigger: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    data_hash: str | None
    split: dict[str, Any]
    search: dict[str, Any]
    training: dict[str, Any]
    test_metrics: dict[str, Any]
    active_version: str | None
    active_test_metrics: dict[str, Any] | None
    relative_improvement: float | None
    candidate_version: str | None
    promoted: bool
    decision: str
    error: str | None
    details: dict[str, Any]


def _record(row: PipelineRun) -> PipelineRunRecord:
    return PipelineRunRecord(
        id=row.id, job_id=row.job_id, model_id=row.model_id, trigger=row.trigger, status=row.status,
        started_at=row.started_at, finished_at=row.finished_at, data_hash=row.data_hash, split=dict(row.split or {}),
        search=dict(row.search or {}), training=dict(row.training or {}), test_metrics=dict(row.test_metrics or {}),
        active_version=row.active_version,
        active_test_metrics=dict(row.active_test_metrics) if row.active_test_metrics is not None else None,
        relative_improvement=row.relative_improvement, candidate_version=row.candidate_version,
        promoted=bool(row.promoted), decision=row.decision or "", error=row.error, details=dict(row.details or {}))


def start_run(*, session: Session, model_id: str, trigger: str, job_id: int | None = None,
              clock: Clock = SYSTEM_CLOCK) -> PipelineRunRecord:
    row = PipelineRun(model_id=model_id, trigger=trigger, job_id=job_id, status="running", started_at=clock.now(),
                      split={}, search={}, training={}, test_metrics={}, promoted=False, decision="", details={})
    session.add(row)
    session.flush()
    return _record(row)


def finish_run(*, session: Session, run_id: int, status: str, clock: Clock = SYSTEM_CLOCK,
               **values: Any) -> PipelineRunRecord:
    row = session.get(PipelineRun, run_id)
    if row is None:
        raise NotFoundError(f"pipeline run {run_id} does not exist")
    row.status, row.finished_at = status, clock.now()
    for name, value in values.items():
        setattr(row, name, value)
    session.flush()
    return _record(row)


def get_run(*, session: Session, run_id: int) -> PipelineRunRecord:
    row = session.get(PipelineRun, run_id)
    if row is None:
        raise NotFoundError(f"pipeline run {run_id} does not exist")
    return _record(row)


def list_runs(*, session: Session, model_id: str | None = None, status: str | None = None, limit: int = 20,
              offset: int = 0) -> list[PipelineRunRecord]:
    """Newest first."""
    stmt = sa.select(PipelineRun).order_by(PipelineRun.id.desc()).limit(limit).offset(offset)
    if model_id is not None:
        stmt = stmt.where(PipelineRun.model_id == model_id)
    if status is not None:
        stmt = stmt.where(PipelineRun.status == status)
    return [_record(r) for r in session.scalars(stmt)]


def last_training(*, session: Session) -> dict[str, datetime]:
    """model id -> when its last successful pipeline run finished."""
    rows = session.execute(sa.select(PipelineRun.model_id, sa.func.max(PipelineRun.finished_at))
                           .where(PipelineRun.status == "succeeded").group_by(PipelineRun.model_id))
    return {model_id: finished for model_id, finished in rows if finished is not None}
