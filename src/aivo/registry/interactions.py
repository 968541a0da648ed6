"""Interactions in the registry: bulk import (pseudonymized, idempotent) and loading back as an
`InteractionLog` for training.

Import pseudonymizes every learner id with the keyed HMAC before anything touches the
database, creates missing learners in the tenant, and inserts rows in large batches with
`ON CONFLICT DO NOTHING` on (learner, order): importing the same file twice changes nothing.
It refuses timestamps and orders outside the schema's bounds, and drops the simulator's
evaluation-only truth (`p_true`) unless the caller is the simulator's own import.

Loading reads the stored values raw and checks each row: a row that cannot be read back (a
timestamp outside the supported years or not a date, JSON that does not parse, an answer that
is not 0/1, ...) is skipped, counted in the log's notes and logged as a warning. One damaged
row never fails a training run, a drift check or a recommendation.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa
from pandas.errors import OutOfBoundsDatetime
from sqlalchemy.orm import Session

from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.data.privacy import pseudonymize_learner_ids
from aivo.data.readers import read_interactions
from aivo.data.schema import (CORE_COLUMNS, EVALUATION_ONLY_COLUMNS, MAX_ORDER, MAX_TIMESTAMP, MIN_TIMESTAMP,
                              InteractionLog, make_log,
                              out_of_range_orders, out_of_range_timestamps, timestamp_range_text)
from aivo.errors import ConflictError, DataError
from aivo.registry.bulk import INTERACTION_COLUMNS, insert_interaction_rows
from aivo.registry.db import dialect_insert
from aivo.registry.records import Record
from aivo.registry.tables import DEFAULT_TENANT, Interaction, Learner

logger = logging.getLogger(__name__)  # `log` is the usual name of an InteractionLog here

_INSERT_BATCH = 100_000
_LOOKUP_CHUNK = 500
# Schema columns stored in their own DB columns (learner_id and order are mapped separately).
_PLAIN_COLUMNS = ("item_id", "skill_ids", "correct", "timestamp", "response_time_s", "subject", "grade",
                  "item_type")


@dataclass(frozen=True)
class ImportResult(Record):
    source: str
    tenant: str
    rows_read: int
    rows_inserted: int
    rows_skipped: int  # already present (same learner and order)
    learners: int
    learners_created: int
    dropped_columns: list[str] = field(default_factory=list)  # evaluation-only columns not stored


def _pseudonyms(raw_ids: Sequence[str], secret_key: bytes | None,
                pseudonymize: Callable[[str], str] | None) -> dict[str, str]:
    if pseudonymize is not None:
        return {raw: pseudonymize(raw) for raw in raw_ids}
    if not secret_key:
        raise ValueError("import_interactions needs secret_key= (or pseudonymize=)")
    return dict(zip(raw_ids, pseudonymize_learner_ids(raw_ids, key=secret_key)))


def ensure_learners(*, session: Session, pseudonyms: Sequence[str], tenant: str = DEFAULT_TENANT,
                    clock: Clock = SYSTEM_CLOCK) -> tuple[dict[str, int], int]:
    """Create missing learners in bulk. Returns ({pseudonym: learner pk}, number created).
    Raises `ConflictError` if any of them already belongs to another tenant."""
    wanted = sorted(set(pseudonyms))
    found = _lookup_learners(session, wanted)
    missing = [p for p in wanted if p not in found]
    if missing:
        now = clock.now()
        table = Learner.__table__
        for start in range(0, len(missing), _INSERT_BATCH):
            rows = [{"pseudonym": p, "tenant": tenant, "created_at": now}
                    for p in missing[start:start + _INSERT_BATCH]]
            session.execute(dialect_insert(session, table).on_conflict_do_nothing(index_elements=["pseudonym"]), rows)
        found.update(_lookup_learners(session, missing))
    other_tenant = sum(1 for p in wanted if found[p][1] != tenant)
    if other_tenant:
        raise ConflictError(f"{other_tenant} of these learners already belong to another tenant than {tenant!r}")
    return {p: pk for p, (pk, _t) in found.items()}, len(missing)


def _lookup_learners(session: Session, pseudonyms: Sequence[str]) -> dict[str, tuple[int, str]]:
    found: dict[str, tuple[int, str]] = {}
    for start in range(0, len(pseudonyms), _LOOKUP_CHUNK):
        chunk = pseudonyms[start:start + _LOOKUP_CHUNK]
        for pk, pseudonym, tenant in session.execute(
                sa.select(Learner.id, Learner.pseudonym, Learner.tenant).where(Learner.pseudonym.in_(chunk))):
            found[pseudonym] = (pk, tenant)
    return found


def _extra_json(frame: pd.DataFrame) -> pd.Series:
    """Columns beyond the schema, as one JSON object per row (None when a row has none)."""
    extra_cols = [c for c in frame.columns if c not in CORE_COLUMNS]
    if not extra_cols:
        return pd.Series([None] * len(frame), index=frame.index, dtype="object")
    out = []
    for rec in frame[extra_cols].astype("object").to_dict("records"):
        kept = {k: (v.item() if hasattr(v, "item") else v) for k, v in rec.items() if not pd.isna(v)}
        out.append(json.dumps(kept, default=str, sort_keys=True) if kept else None)
    return pd.Series(out, index=frame.index, dtype="object")


def _rows_for_insert(frame: pd.DataFrame, learner_pks: np.ndarray, now: datetime) -> pd.DataFrame:
    n = len(frame)

    def column(name: str) -> pd.Series:
        if name in frame.columns:
            return frame[name]
        if name == "timestamp":
            return pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns, UTC]")
        return pd.Series([None] * n, index=frame.index, dtype="object")

    rows = pd.DataFrame({
        "learner_id": learner_pks, "position": frame["order"].astype("int64"),
        **{name: column(name) for name in _PLAIN_COLUMNS},
        "extra": _extra_json(frame),
        "ingested_at": pd.Series(pd.Timestamp(now), index=frame.index),
    }, index=frame.index)
    return rows[list(INTERACTION_COLUMNS)]


def _checked_frame(log: InteractionLog, *, keep_evaluation_truth: bool) -> pd.DataFrame:
    """The log's frame as it may be stored: bounds checked (the registry is an edge too: logs
    built in memory, such as a simulated cohort, did not pass a reader), evaluation-only columns
    dropped unless kept on purpose."""
    frame = log.frame
    if "timestamp" in frame.columns:
        times = pd.to_datetime(frame["timestamp"], utc=True, errors="coerce")
        bad = out_of_range_timestamps(times) | (times.isna() & frame["timestamp"].notna()).to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(f"timestamp {frame['timestamp'].iloc[row]!r} (row {row + 1}) is outside the supported "
                            f"years {timestamp_range_text()}; nothing was stored", path=log.source)
    bad_order = out_of_range_orders(frame["order"])
    if bad_order.any():
        row = int(np.flatnonzero(bad_order)[0])
        raise DataError(f"order {frame['order'].iloc[row]!r} (row {row + 1}) must be between 0 and {MAX_ORDER}; "
                        "nothing was stored", path=log.source)
    truth = sorted(EVALUATION_ONLY_COLUMNS & set(frame.columns))
    if truth and not keep_evaluation_truth:
        logger.warning("column(s) %s not stored: evaluation-only data (the simulator's truth), never ingested",
                       ", ".join(truth))
        frame = frame.drop(columns=truth)
    return frame


def import_interactions(*, session: Session, log: InteractionLog, secret_key: bytes | None = None,
                        tenant: str = DEFAULT_TENANT, pseudonymize: Callable[[str], str] | None = None,
                        clock: Clock = SYSTEM_CLOCK, keep_evaluation_truth: bool = False) -> ImportResult:
    """Pseudonymize and insert `log` (rows already present are skipped).

    Learner ids go through `pseudonymize` (default: aivo.data.privacy's keyed HMAC with
    `secret_key`); raw ids never reach the database. Columns in
    `aivo.data.schema.EVALUATION_ONLY_COLUMNS` (`p_true`) are dropped unless
    `keep_evaluation_truth` (the simulator's own import, e.g. `aivo demo`): no ingest sets them."""
    frame = _checked_frame(log, keep_evaluation_truth=keep_evaluation_truth)
    raw_ids = frame["learner_id"].astype(str)
    pseudonym_of = _pseudonyms(list(raw_ids.unique()), secret_key, pseudonymize)
    pk_of, created = ensure_learners(session=session, pseudonyms=list(pseudonym_of.values()), tenant=tenant,
                                     clock=clock)
    learner_pks = raw_ids.map(lambda raw: pk_of[pseudonym_of[raw]]).to_numpy()
    n = len(frame)
    rows = _rows_for_insert(frame, learner_pks, clock.now())
    inserted = 0
    for start in range(0, n, _INSERT_BATCH):
        inserted += insert_interaction_rows(session, rows.iloc[start:start + _INSERT_BATCH])
    logger.info("imported %d of %d interactions (%d learners, %d new) into tenant %s",
                inserted, n, len(pk_of), created, tenant)
    dropped = sorted(set(log.frame.columns) - set(frame.columns))
    return ImportResult(source=log.source, tenant=tenant, rows_read=n, rows_inserted=inserted,
                        rows_skipped=n - inserted, learners=len(pk_of), learners_created=created,
                        dropped_columns=dropped)


def import_interaction_file(*, session: Session, path: str | Path, secret_key: bytes, format: str = "auto",
                            mapping: Mapping[str, str] | None = None, tenant: str = DEFAULT_TENANT,
                            clock: Clock = SYSTEM_CLOCK) -> ImportResult:
    """Read a file with `aivo.data.readers.read_interactions`, then `import_interactions`."""
    interaction_log = read_interactions(path, format=format, mapping=mapping)
    return import_interactions(session=session, log=interaction_log, secret_key=secret_key, tenant=tenant,
                               clock=clock)


def _raw_columns(dialect: str):
    """(timestamp, extra) selected so that no stored value can fail the read: on SQLite the raw
    text, on PostgreSQL the exact microseconds since the epoch (NULL for +/-infinity) and the
    JSONB (always valid JSON there)."""
    it = Interaction.__table__
    if dialect == "postgresql":
        micros = sa.case((sa.func.isfinite(it.c.timestamp),
                          sa.cast(sa.extract("epoch", it.c.timestamp) * 1_000_000, sa.BigInteger)), else_=None)
        return micros.label("timestamp"), it.c.extra
    return sa.type_coerce(it.c.timestamp, sa.String()).label("timestamp"), \
        sa.type_coerce(it.c.extra, sa.String()).label("extra")


def load_interactions(*, session: Session, learner_ids: Sequence[str] | None = None,
                      tenant: str | None = None, since: datetime | None = None, until: datetime | None = None,
                      source: str = "registry") -> InteractionLog:
    """The stored interactions as a validated `InteractionLog` (learner_id = pseudonym).

    Filters: `learner_ids` (pseudonyms), `tenant`, and `since <= timestamp < until` (rows
    without a timestamp are left out when a time filter is given). Rows whose stored values
    cannot be read back are skipped and counted (the log's notes and a warning). Raises
    `DataError` when nothing matches."""
    it = Interaction.__table__
    dialect = session.get_bind().dialect.name
    raw_timestamp, raw_extra = _raw_columns(dialect)
    stmt = (sa.select(Learner.pseudonym.label("learner_id"), it.c.position.label("order"), it.c.item_id,
                      it.c.skill_ids, it.c.correct, raw_timestamp,
                      (it.c.timestamp.is_not(None)).label("has_timestamp"), it.c.response_time_s, it.c.subject,
                      it.c.grade, it.c.item_type, raw_extra)
            .join(Learner, Learner.id == it.c.learner_id))
    if tenant is not None:
        stmt = stmt.where(Learner.tenant == tenant)
    if since is not None:
        stmt = stmt.where(it.c.timestamp >= since)
    if until is not None:
        stmt = stmt.where(it.c.timestamp < until)
    names = list(stmt.selected_columns.keys())
    rows: list = []
    if learner_ids is not None:
        wanted = sorted(set(learner_ids))
        for start in range(0, len(wanted), _LOOKUP_CHUNK):
            rows.extend(session.execute(stmt.where(Learner.pseudonym.in_(wanted[start:start + _LOOKUP_CHUNK]))))
    else:
        rows = session.execute(stmt).all()
    columns = list(zip(*rows)) if rows else [()] * len(names)
    frame = pd.DataFrame({name: pd.Series(values, dtype="object") for name, values in zip(names, columns)})
    if frame.empty:
        raise DataError("the registry holds no interactions for this selection", path=source)
    frame, skipped = _readable_rows(frame, dialect=dialect)
    notes: tuple[str, ...] = ()
    if skipped:
        total = sum(skipped.values())
        detail = ", ".join(f"{reason}: {n}" for reason, n in sorted(skipped.items()))
        notes = (f"skipped {total} stored interaction(s) that cannot be read back ({detail})",)
        logger.warning("load_interactions: %s", notes[0])
    if frame.empty:
        raise DataError("the registry holds no readable interactions for this selection"
                        + (f" ({notes[0]})" if notes else ""), path=source)
    frame = _expand_extra(frame)
    optional = ("timestamp", "response_time_s", "subject", "grade", "item_type")
    frame = frame.drop(columns=[c for c in optional if frame[c].isna().all()])
    log = make_log(frame, source=source)
    return InteractionLog(log.frame, source=log.source, notes=log.notes + notes)


class StoredRow(NamedTuple):
    """One stored interaction as serving reads it (see `load_interactions_after`)."""

    order: int
    item_id: str  # stripped
    skill_ids: str  # the item id when none is stored
    correct: int
    timestamp_ns: int | None  # ns since the epoch, UTC
    subject: str | None
    grade: float | None
    item_type: str | None


def load_interactions_after(*, session: Session, learner_pk: int, after: int) -> tuple[list[StoredRow], int]:
    """(rows, skipped) of one learner (its primary key) stored after position `after`, in order:
    the rows that can be read back, with the values `load_interactions` gives them (without
    building a log: serving appends them to a cached history), and how many cannot (the same
    checks as `load_interactions`, row by row)."""
    it = Interaction.__table__
    dialect = session.get_bind().dialect.name
    raw_timestamp, raw_extra = _raw_columns(dialect)
    stmt = (sa.select(it.c.position, it.c.item_id, it.c.skill_ids, it.c.correct, raw_timestamp,
                      it.c.timestamp.is_not(None), it.c.response_time_s, it.c.subject, it.c.grade, it.c.item_type,
                      raw_extra)
            .where(it.c.learner_id == learner_pk, it.c.position > after).order_by(it.c.position))
    rows, skipped = [], 0
    for raw in session.execute(stmt):
        row = _readable_row(tuple(raw), dialect=dialect)
        if row is None:
            skipped += 1
        else:
            rows.append(row)
    return rows, skipped


_LOW_NS, _HIGH_NS = pd.Timestamp(MIN_TIMESTAMP).value, pd.Timestamp(MAX_TIMESTAMP).value


def _number(value) -> float | None:
    """`pd.to_numeric(errors="coerce")` of one value (None: not a number)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _readable_row(raw: tuple, *, dialect: str) -> StoredRow | None:
    """One row of `load_interactions_after`'s select, or None when a stored value cannot be read
    back (the checks of `_readable_rows`)."""
    order, item_id, skill_ids, correct, raw_time, has_time, response_time, subject, grade, item_type, extra = raw
    stamp = None
    if has_time:
        try:
            if dialect == "postgresql":
                stamp = None if raw_time is None else pd.Timestamp(int(raw_time), unit="us", tz="UTC").value
            elif isinstance(raw_time, str):
                parsed = pd.Timestamp(raw_time)
                parsed = parsed.tz_localize("UTC") if parsed.tzinfo is None else parsed.tz_convert("UTC")
                stamp = parsed.value
        except (ValueError, OverflowError, OutOfBoundsDatetime):
            stamp = None
        if stamp is None or not _LOW_NS <= stamp < _HIGH_NS:
            return None
    if isinstance(extra, str):
        try:
            extra = json.loads(extra)
        except ValueError:
            return None
    if extra is not None and not isinstance(extra, dict):
        return None
    right = _number(correct)
    position = _number(order)
    if right not in (0.0, 1.0) or position is None or position != round(position) or not 0 <= position <= MAX_ORDER:
        return None
    if not isinstance(item_id, str) or not item_id.strip():
        return None
    if response_time is not None and not (isinstance(response_time, float) and math.isnan(response_time)):
        seconds = _number(response_time)
        if seconds is None or not math.isfinite(seconds) or seconds < 0:
            return None
    level = None
    if grade is not None and not (isinstance(grade, float) and math.isnan(grade)):
        level = _number(grade)
        if level is None or not 0 <= level <= 12:
            return None
    item = item_id.strip()
    return StoredRow(int(position), item, item if skill_ids is None else str(skill_ids), int(right), stamp,
                     None if subject is None else str(subject), level, None if item_type is None else str(item_type))


def _stored_times(raw: pd.Series, present: pd.Series, *, dialect: str) -> tuple[pd.Series, np.ndarray]:
    """(UTC times, unreadable mask) of the raw timestamp column (see `_raw_columns`)."""
    if dialect == "postgresql":
        micros = pd.to_numeric(raw, errors="coerce")
        times = pd.to_datetime(micros, unit="us", utc=True, errors="coerce")
    else:
        text = raw.where(raw.map(lambda v: isinstance(v, str)))
        times = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
    unreadable = present.to_numpy(dtype=bool) & (times.isna().to_numpy() | out_of_range_timestamps(times))
    return times.mask(pd.Series(unreadable, index=raw.index)), unreadable


def _stored_extra(raw: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """(dicts or None, unreadable mask): SQLite holds JSON text, PostgreSQL's JSONB arrives parsed."""
    values, bad = [], np.zeros(len(raw), dtype=bool)
    for i, value in enumerate(raw.tolist()):
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:  # not JSON at all
                bad[i] = True
                value = None
        if value is not None and not isinstance(value, dict):  # JSON, but not an object
            bad[i], value = True, None
        values.append(value)
    return pd.Series(values, index=raw.index, dtype="object"), bad


def _readable_rows(frame: pd.DataFrame, *, dialect: str) -> tuple[pd.DataFrame, dict[str, int]]:
    """Drop rows with a stored value that cannot be read back; {reason: rows dropped}."""
    checks: dict[str, np.ndarray] = {}
    times, checks["timestamp"] = _stored_times(frame["timestamp"], frame.pop("has_timestamp").astype(bool),
                                               dialect=dialect)
    frame["timestamp"] = times
    frame["extra"], checks["extra"] = _stored_extra(frame["extra"])
    correct = pd.to_numeric(frame["correct"], errors="coerce")
    checks["correct"] = ~correct.isin([0, 1]).to_numpy()
    order = pd.to_numeric(frame["order"], errors="coerce")
    checks["order"] = (order.isna() | (order != order.round())).to_numpy() | out_of_range_orders(order)
    checks["item_id"] = ~frame["item_id"].map(lambda v: isinstance(v, str) and bool(v.strip())).to_numpy(dtype=bool)
    rt = pd.to_numeric(frame["response_time_s"], errors="coerce")
    finite_rt = np.isfinite(rt.to_numpy(dtype=np.float64)) & (rt.to_numpy(dtype=np.float64) >= 0)
    checks["response_time_s"] = frame["response_time_s"].notna().to_numpy() & ~finite_rt
    grade = pd.to_numeric(frame["grade"], errors="coerce")
    checks["grade"] = (frame["grade"].notna() & ~grade.between(0, 12)).to_numpy()
    bad = np.zeros(len(frame), dtype=bool)
    skipped: dict[str, int] = {}
    for reason, mask in checks.items():
        new = mask & ~bad  # a row is counted once, under its first unreadable value
        if new.any():
            skipped[reason] = int(new.sum())
        bad |= mask
    if not bad.any():
        return frame, skipped
    return frame.loc[~bad].reset_index(drop=True), skipped


def _expand_extra(frame: pd.DataFrame) -> pd.DataFrame:
    extra = frame.pop("extra")
    if extra.isna().all():
        return frame
    expanded = pd.DataFrame([e if isinstance(e, dict) else {} for e in extra], index=frame.index)
    # A key that names an interaction column never overrides it (ingest refuses such keys).
    expanded = expanded.drop(columns=[c for c in expanded.columns if c in frame.columns or c in CORE_COLUMNS])
    return pd.concat([frame, expanded], axis=1)


def count_interactions(*, session: Session, learner_id: str | None = None, tenant: str | None = None) -> int:
    stmt = sa.select(sa.func.count()).select_from(Interaction.__table__)
    if learner_id is not None or tenant is not None:
        stmt = stmt.join(Learner, Learner.id == Interaction.learner_id)
    if learner_id is not None:
        stmt = stmt.where(Learner.pseudonym == learner_id)
    if tenant is not None:
        stmt = stmt.where(Learner.tenant == tenant)
    return int(session.scalar(stmt))
