"""Column types that behave the same on SQLite and PostgreSQL.

- `UTCDateTime`: always returns timezone-aware UTC datetimes (SQLite stores naive UTC text).
- `JSONDict`: JSONB on PostgreSQL, JSON text on SQLite.
- `BigIntPK`: a 64-bit key on PostgreSQL that stays SQLite's auto-incrementing rowid alias.

Reading never fails on one bad stored value: a timestamp Python cannot represent (year 0, BC,
`infinity`, text that is no date) and, on SQLite, JSON text that does not parse are read as
NULL with a warning in the log, so that one damaged row cannot make a learner's status, export
or erasure fail. (`load_interactions` reads interactions raw and skips such rows, counted.)
On PostgreSQL the timestamp part is done by psycopg loaders that `install_safe_loaders`
registers on each connection (aivo.registry.db does it for every engine).
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

log = logging.getLogger(__name__)
_UNREADABLE = (ValueError, TypeError, OverflowError)


def _shown(value: object) -> str:
    return repr(value)[:80]


def _null_when_unreadable(process, what: str):
    """A result processor that reads a value it cannot convert as NULL, with a warning."""
    if process is None:
        return None

    def safe(value):
        try:
            return process(value)
        except _UNREADABLE as exc:
            log.warning("unreadable stored %s %s read as NULL (%s)", what, _shown(value), exc)
            return None

    return safe


class UTCDateTime(sa.types.TypeDecorator):
    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware datetime (aivo.clock)")
        value = value.astimezone(timezone.utc)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)

    def result_processor(self, dialect, coltype):
        return _null_when_unreadable(super().result_processor(dialect, coltype), "timestamp")


class _SafeJSON(sa.types.TypeDecorator):
    """SQLite's JSON text, read as NULL (with a warning) when it does not parse."""

    impl = sa.JSON()
    cache_ok = True

    def result_processor(self, dialect, coltype):
        return _null_when_unreadable(super().result_processor(dialect, coltype), "JSON")


JSONDict = _SafeJSON().with_variant(JSONB(), "postgresql")
BigIntPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
SHA256 = sa.String(64)


def install_safe_loaders(dbapi_connection) -> None:
    """psycopg loaders for timestamptz/timestamp that answer None (and log) instead of raising
    on values Python's datetime cannot hold (BC dates, year 0, +/-infinity)."""
    # start-up: psycopg loads only for PostgreSQL connections
    import psycopg
    from psycopg.types import datetime as pg_datetime

    def safe(base: type) -> type:
        class Safe(base):
            def load(self, data):
                try:
                    return super().load(data)
                except (psycopg.DataError, *_UNREADABLE) as exc:
                    log.warning("unreadable stored timestamp %s read as NULL (%s)", _shown(bytes(data)), exc)
                    return None

        Safe.__name__ = f"Safe{base.__name__}"
        return Safe

    adapters = dbapi_connection.adapters
    for name, text, binary in (("timestamptz", pg_datetime.TimestamptzLoader, pg_datetime.TimestamptzBinaryLoader),
                               ("timestamp", pg_datetime.TimestampLoader, pg_datetime.TimestampBinaryLoader)):
        adapters.register_loader(name, safe(text))
        adapters.register_loader(name, safe(binary))
