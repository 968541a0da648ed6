"""The dashboard's overview: registry figures, what is running, the latest round, drift and
privacy at a glance, read from the registry; and the time range every chart is drawn over.

The pages behind it have their own modules: dashboard_models (registry), dashboard_runs (jobs
and pipeline runs), dashboard_rounds (federated rounds and the privacy ledger), dashboard_drift,
dashboard_learners and dashboard_sessions (signing in).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import sqlalchemy as sa

from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.config import Settings
from aivo.errors import DataError
from aivo.registry import AuditRecord, Registry, RegistryStatistics, get_statistics, list_audit
from aivo.registry.api_keys import VerifiedKey
from aivo.registry.tables import TrainingSession
from aivo.services.dashboard_drift import DriftRow, list_drift_rows
from aivo.services.dashboard_models import VersionRow, list_versions
from aivo.services.dashboard_rounds import LedgerSummary, RoundRow, ledger_summary, list_rounds
from aivo.services.dashboard_runs import JobList, list_job_rows

RANGES: dict[str, timedelta | None] = {"24h": timedelta(hours=24), "7d": timedelta(days=7),
                                       "30d": timedelta(days=30), "90d": timedelta(days=90), "all": None}
DEFAULT_RANGE = "all"


@dataclass(frozen=True)
class TimeRange:
    name: str  # one of RANGES
    start: datetime | None  # None: since the beginning
    end: datetime

    @property
    def domain(self) -> tuple[datetime, datetime] | None:
        """The x span a time chart shows: the chosen window, or None (the data's own span)."""
        return None if self.start is None else (self.start, self.end)


def time_range(name: str | None, *, clock: Clock = SYSTEM_CLOCK) -> TimeRange:
    """The window named by `?range=` (24h, 7d, 30d, 90d, all). DataError for anything else."""
    name = name or DEFAULT_RANGE
    if name not in RANGES:
        raise DataError(f"unknown time range {name!r}; one of {', '.join(RANGES)}")
    now = clock.now()
    span = RANGES[name]
    return TimeRange(name=name, start=None if span is None else now - span, end=now)


@dataclass(frozen=True)
class Overview:
    stats: RegistryStatistics
    versions: list[VersionRow]  # newest first
    rounds: list[RoundRow]  # oldest first, in the range
    drift: list[DriftRow]  # oldest first, in the range
    jobs: JobList  # the latest jobs (open ones counted whatever their age)
    ledger: LedgerSummary
    sessions_per_day: list[tuple[date, int]]
    generated_at: datetime
    time_range: TimeRange
    notes: list[str] = field(default_factory=list)


def _sessions_per_day(session, since: datetime | None) -> list[tuple[date, int]]:
    day = sa.func.date(TrainingSession.trained_at)
    stmt = sa.select(day, sa.func.count()).group_by(day).order_by(day)
    if since is not None:
        stmt = stmt.where(TrainingSession.trained_at >= since)
    out = []
    for value, count in session.execute(stmt).all():
        out.append((value if isinstance(value, date) else date.fromisoformat(str(value)[:10]), int(count)))
    return out


def overview(*, registry: Registry, settings: Settings, key: VerifiedKey, window: TimeRange,
             clock: Clock = SYSTEM_CLOCK) -> Overview:
    with registry.session(read_only=True) as session:
        stats = get_statistics(session=session)
        per_day = _sessions_per_day(session, window.start)
    return Overview(stats=stats, versions=list_versions(registry=registry),
                    rounds=list_rounds(registry=registry, since=window.start),
                    drift=list_drift_rows(registry=registry, since=window.start),
                    jobs=list_job_rows(registry=registry, key=key, limit=8, clock=clock),
                    ledger=ledger_summary(registry=registry, settings=settings, tenant=key.tenant),
                    sessions_per_day=per_day, generated_at=clock.now(), time_range=window)


def audit_entries(*, registry: Registry, action: str | None = None, limit: int = 200) -> list[AuditRecord]:
    """The audit log, newest first (it never holds learner pseudonyms)."""
    if limit < 1 or limit > 1000:
        raise DataError("limit must be 1..1000")
    return registry.run(lambda session: list_audit(session=session, action=action or None, limit=limit),
                        read_only=True)
