"""Which learners can contribute to the next federated aggregation.

A learner is eligible when their model (active, or in fallback) trained within `max_stale_days`
and that training has not contributed to an aggregation yet. Eligibility can return tens of
thousands of learners, so it is one hand-tuned statement per backend read straight through the
driver (see benchmarks/RESULTS.md for timings at 100,000 learners).
"""

from __future__ import annotations

import operator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from sqlalchemy.orm import Session

from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.errors import DataError
from aivo.registry.db import dialect_name
from aivo.registry.records import EligibleLearner
from aivo.utils import gc_paused

ELIGIBLE_STATUSES = ("active", "fallback")


def get_eligible_for_aggregation(*, session: Session, max_stale_days: float, kind: str = "brain",
                                 clock: Clock = SYSTEM_CLOCK, limit: int | None = None) -> list[EligibleLearner]:
    """Learners whose model trained within `max_stale_days` and has not contributed since:
    one entry per learner, for its latest uncontributed session, oldest session first.
    Models that are pending or inactive are left out. (Privacy budgets are the ledger's job.)"""
    if max_stale_days < 0:
        raise DataError(f"max_stale_days must be >= 0, got {max_stale_days}")
    cutoff = clock.now() - timedelta(days=max_stale_days)
    postgresql = dialect_name(session) == "postgresql"
    params = {"kind": kind,
              # SQLite compares the text SQLAlchemy stores: naive UTC 'YYYY-MM-DD HH:MM:SS.ffffff'.
              "cutoff": cutoff if postgresql else cutoff.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")}
    with _hash_joins(session), gc_paused():
        # Straight through the driver, each row built as an EligibleLearner by the driver's row
        # factory: no per-value processing and no intermediate tuples (31,000 rows: ~2x faster).
        raw = session.connection().connection.dbapi_connection
        if postgresql:  # psycopg returns aware datetimes (UTC: see _hash_joins)
            cursor = raw.cursor(row_factory=lambda _cursor: EligibleLearner._make)
        else:
            cursor = raw.cursor()
            cursor.row_factory = _sqlite_row
        try:
            cursor.execute(_ELIGIBLE_SQL["postgresql" if postgresql else "sqlite"], params)
            rows = cursor.fetchall()
        finally:
            cursor.close()
        rows.sort(key=_SESSION_ID)  # oldest session first (sorting here spares the DB a disk sort)
        return rows if limit is None else rows[:limit]


_SESSION_ID = operator.itemgetter(2)


def _sqlite_row(_cursor, row: tuple) -> EligibleLearner:
    # Stored as naive UTC text; parsing it with an explicit offset is ~6x faster than .replace(tzinfo=).
    p, m, sid, v, t, n, u = row
    return EligibleLearner(p, m, sid, v, datetime.fromisoformat(t + "+00:00"), n, u)


# Eligibility returns tens of thousands of rows, so it is one hand-tuned statement per backend,
# read without per-value type processing. "pending" is the latest uncontributed session of each
# model trained since the cutoff; a model's last_trained_at is the time of its latest session,
# so filtering models on it too keeps every candidate and tells the planner how many there are.
_ELIGIBLE_SELECT = """
SELECT l.pseudonym, p.learner_model_id, p.id, mv.version, p.trained_at, p.samples, p.update_artifact_sha256
FROM ({pending}) AS p
JOIN learner_models lm ON lm.id = p.learner_model_id
JOIN learners l ON l.id = lm.learner_id
JOIN main_model_versions mv ON mv.id = p.main_version_id
WHERE lm.status IN ({statuses}) AND lm.kind = {kind} AND lm.last_trained_at >= {cutoff}
"""
_STATUSES_SQL = ", ".join(f"'{s}'" for s in ELIGIBLE_STATUSES)  # constants, not user input
_ELIGIBLE_SQL = {
    "postgresql": _ELIGIBLE_SELECT.format(statuses=_STATUSES_SQL, kind="%(kind)s", cutoff="%(cutoff)s", pending="""
        SELECT DISTINCT ON (ts.learner_model_id) ts.learner_model_id, ts.id, ts.main_version_id, ts.trained_at,
               ts.samples, ts.update_artifact_sha256
        FROM training_sessions ts WHERE ts.contributed = false AND ts.trained_at >= %(cutoff)s
        ORDER BY ts.learner_model_id, ts.id DESC"""),
    # SQLite: with max(), the bare columns come from the row holding the maximum (documented).
    # INDEXED BY: the planner would rather scan a million rows in learner order than sort 40,000.
    "sqlite": _ELIGIBLE_SELECT.format(statuses=_STATUSES_SQL, kind=":kind", cutoff=":cutoff", pending="""
        SELECT ts.learner_model_id, max(ts.id) AS id, ts.main_version_id, ts.trained_at, ts.samples,
               ts.update_artifact_sha256
        FROM training_sessions ts INDEXED BY ix_training_sessions_pending
        WHERE ts.contributed = 0 AND ts.trained_at >= :cutoff
        GROUP BY ts.learner_model_id"""),
}


@contextmanager
def _hash_joins(session: Session):
    """PostgreSQL estimates "recent AND not contributed" as the product of the two selectivities
    (they are strongly correlated), expects a handful of rows and picks nested loops that do
    tens of thousands of index lookups: for this one statement, hash joins are always right.
    Also sets the session time zone to UTC so timestamps come back in UTC."""
    if dialect_name(session) != "postgresql":
        yield
        return
    previous = session.execute(sa.text("SELECT current_setting('enable_nestloop'), current_setting('TimeZone')")).one()
    # Transaction-local settings, restored right after; UTC so that timestamps come back in UTC.
    session.execute(sa.text("SELECT set_config('enable_nestloop', 'off', true), set_config('TimeZone', 'UTC', true)"))
    try:
        yield
    finally:
        session.execute(sa.text("SELECT set_config('enable_nestloop', :nestloop, true), "
                                "set_config('TimeZone', :tz, true)"), {"nestloop": previous[0], "tz": previous[1]})
