"""Fast bulk insert of interaction rows, one path per backend, inside the caller's transaction.

ORM/Core executemany with ON CONFLICT runs at a few thousand rows/s; these paths run at tens
to hundreds of thousands:
- PostgreSQL: COPY into a temporary table, then one INSERT ... SELECT ... ON CONFLICT DO NOTHING.
- SQLite: the driver's executemany with INSERT ... ON CONFLICT DO NOTHING.
Both return the number of rows really inserted (conflicting rows are skipped).

Input: a DataFrame with exactly `INTERACTION_COLUMNS`; `timestamp` and `ingested_at` are
timezone-aware datetime64 columns, `extra` holds JSON text or None.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

INTERACTION_COLUMNS = ("learner_id", "position", "item_id", "skill_ids", "correct", "timestamp",
                       "response_time_s", "subject", "grade", "item_type", "extra", "ingested_at")
_TIME_COLUMNS = ("timestamp", "ingested_at")


_SMALL = 64  # rows: below this a Python pass costs less than three pandas operations per column


def _missing(value) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and value != value)


def _plain(series: pd.Series) -> list:
    """Python values, None for any missing value (NaN, NA, NaT)."""
    if len(series) <= _SMALL:  # an API batch: the per-operation cost of pandas dominates
        return [None if _missing(v) else v for v in series.astype("object").tolist()]
    return series.astype("object").where(series.notna(), None).tolist()


def insert_interaction_rows(session: Session, rows: pd.DataFrame) -> int:
    if list(rows.columns) != list(INTERACTION_COLUMNS):
        raise ValueError(f"expected columns {INTERACTION_COLUMNS}, got {tuple(rows.columns)}")
    if rows.empty:
        return 0
    if session.get_bind().dialect.name == "postgresql":
        return _insert_postgresql(session, rows)
    return _insert_sqlite(session, rows)


def _insert_sqlite(session: Session, rows: pd.DataFrame) -> int:
    values = []
    for name in INTERACTION_COLUMNS:
        series = rows[name]
        if name in _TIME_COLUMNS:
            values.append(_sqlite_times(series))
            continue
        values.append(_plain(series))
    cols = ", ".join(INTERACTION_COLUMNS)
    marks = ", ".join("?" for _ in INTERACTION_COLUMNS)
    sql = (f"INSERT INTO interactions ({cols}) VALUES ({marks}) "
           "ON CONFLICT (learner_id, position) DO NOTHING")
    cursor = session.connection().connection.dbapi_connection.cursor()
    try:
        cursor.executemany(sql, list(zip(*values)))
        return cursor.rowcount  # sqlite3 sums the changes over executemany; skipped rows count 0
    finally:
        cursor.close()


def _sqlite_times(series: pd.Series) -> list:
    """UTC text as SQLAlchemy's SQLite DateTime writes it ('YYYY-MM-DD HH:MM:SS.ffffff')."""
    utc = series.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[us]")
    text = np.char.replace(np.datetime_as_string(utc, unit="us"), "T", " ").astype(object)
    text[pd.isna(series).to_numpy()] = None
    return text.tolist()


def _insert_postgresql(session: Session, rows: pd.DataFrame) -> int:
    values = []
    for name in INTERACTION_COLUMNS:
        series = rows[name]
        if name in _TIME_COLUMNS:
            series = pd.Series(series.dt.to_pydatetime(), index=series.index, dtype="object")
        values.append(_plain(series))
    cols = ", ".join(f'"{c}"' for c in INTERACTION_COLUMNS)
    dbapi = session.connection().connection.dbapi_connection
    with dbapi.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS pg_temp.aivo_import_interactions")
        cur.execute("CREATE TEMP TABLE aivo_import_interactions (learner_id integer, position bigint, "
                    "item_id varchar(256), skill_ids varchar(1024), correct smallint, \"timestamp\" timestamptz, "
                    "response_time_s float8, subject varchar(64), grade smallint, item_type varchar(64), "
                    "extra jsonb, ingested_at timestamptz) ON COMMIT DROP")
        with cur.copy(f"COPY aivo_import_interactions ({cols}) FROM STDIN") as copy:
            for record in zip(*values):
                copy.write_row(record)
        cur.execute(f"INSERT INTO interactions ({cols}) SELECT {cols} FROM aivo_import_interactions "
                    "ON CONFLICT (learner_id, position) DO NOTHING")
        inserted = cur.rowcount
        cur.execute("DROP TABLE aivo_import_interactions")
    return inserted
