"""The figures the operator dashboard plots, read from the registry in one read-only transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import sqlalchemy as sa

from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.registry import (FederatedUpdateRecord, MainVersionRecord, Registry, RegistryStatistics,
                           get_statistics, list_federated_updates, list_main_versions)
from aivo.registry.tables import PrivacyLedgerEntry, TrainingSession
from aivo.services.drift import list_drift_reports
from aivo.training.runs import MAIN_BRAIN_MODEL_ID


@dataclass(frozen=True)
class DashboardData:
    stats: RegistryStatistics
    versions: list[MainVersionRecord]  # oldest first
    federated: list[FederatedUpdateRecord]  # oldest first
    sessions_per_day: list[tuple[date, int]]  # local training sessions, the last `days` days
    ledger_epsilons: list[float] | None = None  # user-level epsilon per learner with one
    non_private_learners: int = 0  # learners who took part in a round without DP (no guarantee)
    drift: list = field(default_factory=list)  # the Main Brain's drift reports, oldest first
    generated_at: datetime | None = None
    extra: dict = field(default_factory=dict)


def _sessions_per_day(session, since: datetime) -> list[tuple[date, int]]:
    day = sa.func.date(TrainingSession.trained_at)
    rows = session.execute(sa.select(day, sa.func.count()).where(TrainingSession.trained_at >= since)
                           .group_by(day).order_by(day)).all()
    out = []
    for value, count in rows:
        out.append((value if isinstance(value, date) else date.fromisoformat(str(value)[:10]), int(count)))
    return out


def _ledger(session) -> tuple[list[float], int]:
    ledger = PrivacyLedgerEntry
    epsilons = [float(e) for e in session.scalars(sa.select(ledger.epsilon).where(ledger.epsilon.is_not(None)))]
    non_private = int(session.scalar(sa.select(sa.func.count()).select_from(ledger)
                                     .where(ledger.non_private_rounds > 0)))
    return epsilons, non_private


def dashboard_data(*, registry: Registry, days: int = 60, max_points: int = 500,
                   clock: Clock = SYSTEM_CLOCK) -> DashboardData:
    now = clock.now()
    with registry.session(read_only=True) as session:
        stats = get_statistics(session=session)
        versions = list_main_versions(session=session, limit=max_points)[::-1]
        federated = list_federated_updates(session=session, limit=max_points)[::-1]
        per_day = _sessions_per_day(session, now - timedelta(days=days))
        epsilons, non_private = _ledger(session)
        drift = list_drift_reports(session=session, model_id=MAIN_BRAIN_MODEL_ID, limit=max_points)[::-1]
    return DashboardData(stats=stats, versions=versions, federated=federated, sessions_per_day=per_day,
                         ledger_epsilons=epsilons, non_private_learners=non_private, drift=drift, generated_at=now)
