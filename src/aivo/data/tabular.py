"""Conform a tabular event log (CSV or Parquet, already parsed) to the interaction schema.

Both tabular readers parse their file into a raw DataFrame whose rows are in file order, then
call `conform_table`. It applies the column mapping (`{"schema column": "source column"}`),
checks every value, and reports the first bad one through a `RowLocator`, which knows how to
name a row in that file: the CSV reader says `file.csv:LINE:` (the header is line 1, data row
k is line k+1 unless blank lines or quoted line breaks shift it), the Parquet reader says
`file.parquet: row K:`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Protocol

import numpy as np
import pandas as pd

from aivo.data.schema import (CORE_COLUMNS, MAX_ORDER, REQUIRED_COLUMNS, SKILL_SEPARATOR, InteractionLog,
                              out_of_range_orders, out_of_range_timestamps, text_with_nul, timestamp_range_text,
                              validate_frame)
from aivo.errors import DataError

MAX_GRADE = 12  # K-12; kindergarten is grade 0 ("K" is accepted)
# Unix times above this are read as milliseconds (1e11 s is the year 5138; 1e11 ms is 1973).
_EPOCH_MS_THRESHOLD = 1e11
_NUMBER = re.compile(r"[+-]?\d+(\.\d*)?([eE][+-]?\d+)?")


class RowLocator(Protocol):
    """Names places in one source file for error messages."""

    source: str

    def header_error(self, message: str) -> DataError: ...

    def row_error(self, message: str, row: int) -> DataError:
        """`row` is the 0-based position of the data row in file order."""
        ...

    def row_label(self, row: int) -> str: ...


def check_mapping(mapping: Mapping[str, str] | None, columns: list[str], *,
                  where: RowLocator) -> dict[str, str]:
    """Validate a `{"schema column": "source column"}` mapping against the file's columns."""
    mapping = dict(mapping or {})
    unknown = [k for k in mapping if k not in CORE_COLUMNS]
    if unknown:
        raise where.header_error(f"column mapping names unknown schema column(s): {', '.join(unknown)}; "
                                 f"schema columns are: {', '.join(CORE_COLUMNS)}")
    absent = [f"{k}={v}" for k, v in mapping.items() if v not in columns]
    if absent:
        raise where.header_error(f"column mapping {', '.join(absent)}: source column not found; "
                                 f"found: {', '.join(columns)}")
    return mapping


def apply_mapping(raw: pd.DataFrame, mapping: dict[str, str]) -> pd.DataFrame:
    """Schema columns first (mapped ones taken from their source), then every other column."""
    out: dict[str, pd.Series] = {}
    for name in CORE_COLUMNS:
        if name in mapping:
            out[name] = raw[mapping[name]]
        elif name in raw.columns and name not in mapping.values():
            out[name] = raw[name]
    used = set(mapping.values()) | set(out)
    for name in raw.columns:
        if name not in used:
            out[name] = raw[name]
    return pd.DataFrame(out, index=raw.index)


def _is_text(series: pd.Series) -> bool:
    return series.dtype == object or isinstance(series.dtype, pd.StringDtype)


def _to_numbers(series: pd.Series) -> pd.Series:
    """Numbers where values parse as numbers, NaN elsewhere (booleans count as 0/1)."""
    if series.dtype == bool:
        return series.astype("int64")
    return pd.to_numeric(series.astype("string").str.strip() if _is_text(series) else series, errors="coerce")


def _is_blank(series: pd.Series) -> np.ndarray:
    """True where a value is missing or whitespace only (Parquet nulls, empty CSV fields)."""
    blank = series.isna().to_numpy()
    if _is_text(series):
        text = series.astype("string").str.strip()
        blank = blank | (text == "").fillna(True).to_numpy(dtype=bool)
    return blank


def _shown(value: object) -> str:
    """A value as the user wrote it, for messages (NumPy scalars shown as plain numbers)."""
    if isinstance(value, np.generic):
        value = value.item()
    return repr(value)[:60]


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _text(series: pd.Series, *, name: str, where: RowLocator, required: bool) -> pd.Series:
    blank = _is_blank(series)
    if required and blank.any():
        raise where.row_error(f"empty {name}", _first(blank))
    text = series.astype("string").str.strip()
    return text.mask(pd.Series(blank, index=series.index))


def _numbers(series: pd.Series, *, name: str, where: RowLocator, blank: np.ndarray) -> pd.Series:
    """Parse numbers; a non-blank value that is not a number is an error."""
    numbers = _to_numbers(series)
    bad = numbers.isna().to_numpy() & ~blank
    if bad.any():
        row = _first(bad)
        raise where.row_error(f"{name} must be a number, got {_shown(series.iloc[row])}", row)
    return numbers.astype("float64")


def _whole(numbers: pd.Series, series: pd.Series, *, name: str, where: RowLocator) -> None:
    values = numbers.to_numpy()
    frac = ~np.isnan(values) & (values != np.round(values))
    if frac.any():
        row = _first(frac)
        raise where.row_error(f"{name} must be a whole number, got {_shown(series.iloc[row])}", row)


def _correct(series: pd.Series, *, where: RowLocator) -> np.ndarray:
    blank = _is_blank(series)
    if blank.any():
        raise where.row_error("empty answer: 'correct' must be 0 or 1", _first(blank))
    numbers = _to_numbers(series)
    bad = ~numbers.isin([0, 1]).to_numpy()
    if bad.any():
        row = _first(bad)
        raise where.row_error(f"answer ('correct') must be 0 or 1, got {_shown(series.iloc[row])}", row)
    return numbers.to_numpy().astype(np.int8)


def _skills(series: pd.Series, item_ids: pd.Series) -> pd.Series:
    """Normalize 'a; b;;c' to 'a;b;c' (per unique value: skill strings repeat a lot)."""
    text = series.astype("string")
    uniques = text.dropna().unique()
    cleaned = {u: SKILL_SEPARATOR.join(s.strip() for s in str(u).split(SKILL_SEPARATOR) if s.strip())
               for u in uniques}
    out = text.map(cleaned).astype("string")
    out = out.mask(out.isna() | (out == ""), item_ids)
    return out


def _grade(series: pd.Series, *, where: RowLocator) -> pd.Series:
    blank = _is_blank(series)
    if _is_text(series):
        text = series.astype("string").str.strip()
        series = text.mask(text.str.upper() == "K", "0")
    numbers = _numbers(series, name="grade", where=where, blank=blank)
    _whole(numbers, series, name="grade", where=where)
    out_of_range = ((numbers < 0) | (numbers > MAX_GRADE)).to_numpy()
    if out_of_range.any():
        row = _first(out_of_range)
        raise where.row_error(f"grade must be K or 0..{MAX_GRADE}, got {_shown(series.iloc[row])}", row)
    return numbers.round().astype("Int64")


def parse_timestamps(series: pd.Series) -> tuple[pd.Series, np.ndarray, str | None]:
    """Parse a timestamp column to UTC. Returns (times, bad mask, note).

    Accepts datetimes (naive ones are taken as UTC), ISO 8601 and other common date strings,
    and Unix epoch numbers (seconds, or milliseconds when above 1e11)."""
    blank = _is_blank(series)
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        times = pd.to_datetime(series, utc=True)
        return times, np.zeros(len(series), dtype=bool), None
    is_text = _is_text(series)
    text = series.astype("string").str.strip() if is_text else series
    if blank.all():
        return pd.Series(pd.NaT, index=series.index, dtype="datetime64[us, UTC]"), blank & False, None
    first = text[~blank].iloc[0]
    looks_numeric = not is_text or _NUMBER.fullmatch(str(first)) is not None
    numbers = pd.to_numeric(text, errors="coerce") if looks_numeric else None
    if numbers is not None and (numbers.notna().to_numpy() | blank).all():
        unit = "ms" if float(numbers.abs().median()) > _EPOCH_MS_THRESHOLD else "s"
        times = pd.to_datetime(numbers, unit=unit, utc=True, errors="coerce")
        note = f"timestamps read as Unix epoch {'milliseconds' if unit == 'ms' else 'seconds'}"
        return times, times.isna().to_numpy() & ~blank, note
    text = text.mask(pd.Series(blank, index=series.index))
    times = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
    retry = times.isna().to_numpy() & ~blank
    if retry.any():
        # Not all ISO 8601: parse the rest one by one (slower, only for those values).
        again = pd.to_datetime(text[retry], utc=True, errors="coerce", format="mixed")
        times = times.copy()
        times[retry] = again
    return times, times.isna().to_numpy() & ~blank, None


def _timestamps(series: pd.Series, *, where: RowLocator, required: bool) -> tuple[pd.Series, str | None]:
    times, bad, note = parse_timestamps(series)
    if bad.any():
        row = _first(bad)
        raise where.row_error(f"unreadable timestamp {_shown(series.iloc[row])}", row)
    outside = out_of_range_timestamps(times)
    if outside.any():
        row = _first(outside)
        raise where.row_error(f"timestamp {_shown(series.iloc[row])} is outside the supported years "
                              f"{timestamp_range_text()}", row)
    missing = times.isna().to_numpy()
    if required and missing.any():
        raise where.row_error("empty timestamp (there is no 'order' column, so the timestamp orders "
                              "the learner's history)", _first(missing))
    return times, note


def conform_table(raw: pd.DataFrame, *, mapping: Mapping[str, str] | None, where: RowLocator,
                  notes: tuple[str, ...] = ()) -> InteractionLog:
    """Map, check and coerce a raw table (rows in file order) into a validated `InteractionLog`."""
    columns = [str(c) for c in raw.columns]
    raw = raw.reset_index(drop=True)
    raw.columns = columns
    frame = apply_mapping(raw, check_mapping(mapping, columns, where=where))
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        hint = " ".join(f"--map {c}=<column>" for c in missing)
        raise where.header_error(f"missing required column(s): {', '.join(missing)}; found: "
                                 f"{', '.join(columns)} (map them with {hint})")
    if len(frame) == 0:
        raise where.header_error("no data rows (the file has a header only)")
    nul = text_with_nul(frame)
    if nul is not None:
        if nul[1] < 0:
            raise where.header_error("a NUL character in a column name: text may not hold one")
        raise where.row_error(f"a NUL character in column {nul[0]!r}: text may not hold one", nul[1])
    out = pd.DataFrame(index=frame.index)
    out["learner_id"] = _text(frame["learner_id"], name="learner_id", where=where, required=True)
    out["item_id"] = _text(frame["item_id"], name="item_id", where=where, required=True)
    out["correct"] = _correct(frame["correct"], where=where)
    if "skill_ids" in frame.columns:
        out["skill_ids"] = _skills(frame["skill_ids"], out["item_id"])
    notes = list(notes)
    if "order" in frame.columns:
        blank = _is_blank(frame["order"])
        if blank.any():
            raise where.row_error("empty order", _first(blank))
        order = _numbers(frame["order"], name="order", where=where, blank=blank)
        _whole(order, frame["order"], name="order", where=where)
        outside = out_of_range_orders(order)
        if outside.any():
            row = _first(outside)
            raise where.row_error(f"order must be between 0 and {MAX_ORDER}, got {_shown(frame['order'].iloc[row])}",
                                  row)
        out["order"] = order.astype("int64")
    if "timestamp" in frame.columns:
        out["timestamp"], note = _timestamps(frame["timestamp"], where=where, required="order" not in frame)
        if note:
            notes.append(note)
    if "response_time_s" in frame.columns:
        blank = _is_blank(frame["response_time_s"])
        rt = _numbers(frame["response_time_s"], name="response_time_s", where=where, blank=blank)
        negative = (rt < 0).to_numpy()
        if negative.any():
            row = _first(negative)
            shown = _shown(frame["response_time_s"].iloc[row])
            raise where.row_error(f"response_time_s must not be negative, got {shown}", row)
        out["response_time_s"] = rt
    if "grade" in frame.columns:
        out["grade"] = _grade(frame["grade"], where=where)
    for name in ("subject", "item_type"):
        if name in frame.columns:
            out[name] = _text(frame[name], name=name, where=where, required=False)
    for name in frame.columns:
        if name not in CORE_COLUMNS:
            out[name] = frame[name]
    if "order" in out.columns:
        _check_duplicates(out, where=where)
    else:
        notes.append("no 'order' column: order derived from " +
                     ("timestamp, then file order" if "timestamp" in out.columns else "file order"))
    return InteractionLog(validate_frame(out, source=where.source), source=where.source, notes=tuple(notes))


def _check_duplicates(frame: pd.DataFrame, *, where: RowLocator) -> None:
    if not frame.duplicated(["learner_id", "order"]).any():
        return
    # The first row (in file order) that repeats an earlier (learner, order), and that earlier row.
    second = _first(frame.duplicated(["learner_id", "order"], keep="first").to_numpy())
    learner, order = frame["learner_id"].iloc[second], int(frame["order"].iloc[second])
    same_key = ((frame["learner_id"] == learner) & (frame["order"] == order)).to_numpy()
    earlier = _first(same_key)
    raise where.row_error(f"duplicate (learner, order): learner {learner!r} already has an interaction "
                          f"at order {order} ({where.row_label(earlier)})", second)
