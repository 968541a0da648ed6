"""Federated updates: one row per aggregation round, and the contributions it consumed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, aliased

from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.errors import DataError, NotFoundError
from aivo.registry.tables import FEDERATED_STATUSES, FederatedUpdate, MainModelVersion, TrainingSession
from aivo.registry.records import FederatedUpdateRecord

_ID_CHUNK = 500  # keeps IN lists well under SQLite's bound-parameter limit


def _version_id(session: Session, version: str) -> int:
    pk = session.scalar(sa.select(MainModelVersion.id).where(MainModelVersion.version == version))
    if pk is None:
        raise NotFoundError(f"main version {version!r} does not exist")
    return pk


def record_federated_update(*, session: Session, version_before: str, strategy: str, status: str,
                            version_after: str | None = None, contributing_session_ids: Sequence[int] = (),
                            num_contributors: int | None = None, metrics_before: dict[str, Any] | None = None,
                            metrics_after: dict[str, Any] | None = None, improvement: float | None = None,
                            privacy: dict[str, Any] | None = None, details: dict[str, Any] | None = None,
                            clock: Clock = SYSTEM_CLOCK) -> FederatedUpdateRecord:
    """Record an aggregation round and mark its contributions.

    Every training session in `contributing_session_ids` (and any older uncontributed session of
    the same learner models, which the newer one supersedes) is marked as contributed to this
    update, whatever its status: the updates were consumed and their privacy cost was spent."""
    if status not in FEDERATED_STATUSES:
        raise DataError(f"invalid federated update status {status!r}; one of {', '.join(FEDERATED_STATUSES)}")
    session_ids = sorted({int(i) for i in contributing_session_ids})
    row = FederatedUpdate(
        version_before_id=_version_id(session, version_before),
        version_after_id=None if version_after is None else _version_id(session, version_after),
        strategy=strategy, num_contributors=len(session_ids) if num_contributors is None else num_contributors,
        metrics_before=dict(metrics_before or {}), metrics_after=dict(metrics_after or {}),
        improvement=improvement, privacy=dict(privacy or {}), status=status, details=dict(details or {}),
        created_at=clock.now())
    session.add(row)
    session.flush()
    mark_contributed(session=session, federated_update_id=row.id, training_session_ids=session_ids)
    return get_federated_update(session=session, update_id=row.id)


def mark_contributed(*, session: Session, federated_update_id: int, training_session_ids: Sequence[int]) -> int:
    """Mark sessions (and the older uncontributed sessions of the same models) as contributed.
    Returns the number of sessions marked."""
    ts = TrainingSession.__table__
    newer = ts.alias("newer")
    marked = 0
    ids = sorted({int(i) for i in training_session_ids})
    for start in range(0, len(ids), _ID_CHUNK):
        chunk = ids[start:start + _ID_CHUNK]
        supersedes = (sa.select(newer.c.id).where(newer.c.id.in_(chunk),
                                                  newer.c.learner_model_id == ts.c.learner_model_id,
                                                  ts.c.id <= newer.c.id).exists())
        result = session.execute(sa.update(ts).where(ts.c.contributed == sa.false(), supersedes)
                                 .values(contributed=True, federated_update_id=federated_update_id))
        marked += max(result.rowcount or 0, 0)
    return marked


def _record(row: FederatedUpdate, before: str, after: str | None) -> FederatedUpdateRecord:
    return FederatedUpdateRecord(
        id=row.id, version_before=before, version_after=after, strategy=row.strategy,
        num_contributors=row.num_contributors, metrics_before=dict(row.metrics_before or {}),
        metrics_after=dict(row.metrics_after or {}), improvement=row.improvement,
        privacy=dict(row.privacy or {}), status=row.status, details=dict(row.details or {}),
        created_at=row.created_at)


def _select():
    before, after = aliased(MainModelVersion), aliased(MainModelVersion)
    return (sa.select(FederatedUpdate, before.version, after.version)
            .join(before, before.id == FederatedUpdate.version_before_id)
            .outerjoin(after, after.id == FederatedUpdate.version_after_id))


def get_federated_update(*, session: Session, update_id: int) -> FederatedUpdateRecord:
    row = session.execute(_select().where(FederatedUpdate.id == update_id)).first()
    if row is None:
        raise NotFoundError(f"federated update {update_id} does not exist")
    return _record(*row)


def list_federated_updates(*, session: Session, status: str | None = None, limit: int = 50,
                           offset: int = 0) -> list[FederatedUpdateRecord]:
    """Newest first."""
    stmt = _select().order_by(FederatedUpdate.id.desc()).limit(limit).offset(offset)
    if status is not None:
        stmt = stmt.where(FederatedUpdate.status == status)
    return [_record(*row) for row in session.execute(stmt)]
