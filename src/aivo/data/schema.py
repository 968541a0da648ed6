"""The one interaction schema every reader produces and every trainer consumes.

An interaction log is a pandas DataFrame with these columns (one row per attempt):

| column          | dtype            | required | meaning                                         |
|-----------------|------------------|----------|-------------------------------------------------|
| learner_id      | string           | yes      | learner (pseudonymized once it enters the DB)   |
| item_id         | string           | yes      | question / exercise                             |
| skill_ids       | string           | no       | skill(s), ';'-separated; defaults to item_id    |
| correct         | int8 (0/1)       | yes      | 1 = correct on first attempt                    |
| order           | int64            | yes*     | position in the learner's history (0-based)     |
| timestamp       | datetime64[UTC]  | no       | when; `order` is derived from it when missing   |
| response_time_s | float64          | no       | seconds taken to answer                         |
| subject         | string           | no       | e.g. math, reading                              |
| grade           | Int64            | no       | K-12 grade, 0 = kindergarten                    |
| item_type       | string           | no       | e.g. multiple_choice, word_problem              |

Any other column is kept as is (the simulator adds `p_true`, `accommodation`, ...).
*`order` is derived from `timestamp` (then file order) when absent.

Bounds every edge checks (API, file readers, simulator, registry import):
- `timestamp` in [`MIN_TIMESTAMP`, `MAX_TIMESTAMP`) in UTC: the years 1900-2099, with a day of
  slack at both ends so that every time the API accepts (its year as written, with any UTC
  offset) passes here too;
- `order` in [0, `MAX_ORDER`] (the largest integer every JSON client and float64 hold exactly).

`EVALUATION_ONLY_COLUMNS` (the simulator's true probability `p_true`) are evaluation data: an
ingest never stores them (see aivo.registry.interactions.import_interactions).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from aivo.errors import DataError

REQUIRED_COLUMNS = ("learner_id", "item_id", "correct")
OPTIONAL_COLUMNS = ("skill_ids", "order", "timestamp", "response_time_s", "subject", "grade", "item_type")
CORE_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
SKILL_SEPARATOR = ";"
MIN_TIMESTAMP = datetime(1899, 12, 31, tzinfo=timezone.utc)  # inclusive
MAX_TIMESTAMP = datetime(2100, 1, 2, tzinfo=timezone.utc)  # exclusive
TIMESTAMP_YEARS = (1900, 2099)  # as written: the API's rule (MIN/MAX above add a day for UTC offsets)
MAX_ORDER = 2**53 - 1
# The simulator's truth: evaluation data that an ingest (API, file import) never stores.
EVALUATION_ONLY_COLUMNS = frozenset({"p_true"})


def timestamp_range_text() -> str:
    return (f"{TIMESTAMP_YEARS[0]}..{TIMESTAMP_YEARS[1]} "
            f"(in UTC: {MIN_TIMESTAMP:%Y-%m-%d} to {MAX_TIMESTAMP:%Y-%m-%d}, end excluded)")


def out_of_range_timestamps(times: pd.Series) -> np.ndarray:
    """True where a parsed (UTC) timestamp lies outside [MIN_TIMESTAMP, MAX_TIMESTAMP)."""
    present = times.notna().to_numpy()
    if not present.any():
        return np.zeros(len(times), dtype=bool)
    low, high = pd.Timestamp(MIN_TIMESTAMP), pd.Timestamp(MAX_TIMESTAMP)
    inside = ((times >= low) & (times < high)).fillna(False).to_numpy(dtype=bool)
    return present & ~inside


def out_of_range_orders(order: pd.Series) -> np.ndarray:
    values = pd.to_numeric(order, errors="coerce").to_numpy(dtype=np.float64)
    return ~np.isnan(values) & ((values < 0) | (values > MAX_ORDER))


@dataclass(frozen=True)
class InteractionLog:
    """A validated interaction log: rows sorted by (learner_id, order)."""

    frame: pd.DataFrame
    source: str = "<memory>"
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def num_interactions(self) -> int:
        return len(self.frame)

    @property
    def num_learners(self) -> int:
        return int(self.frame["learner_id"].nunique())

    def data_hash(self) -> str:
        """A content hash of the core columns: identifies the training data in checkpoints."""
        return frame_hash(self.frame)

    def select_learners(self, learner_ids) -> "InteractionLog":
        keep = self.frame["learner_id"].isin(set(learner_ids))
        return InteractionLog(self.frame.loc[keep].reset_index(drop=True), self.source, self.notes)


def frame_hash(frame: pd.DataFrame) -> str:
    cols = [c for c in ("learner_id", "item_id", "skill_ids", "correct", "order") if c in frame.columns]
    digest = hashlib.sha256()
    for col in cols:
        values = pd.util.hash_pandas_object(frame[col].astype("string"), index=False).to_numpy()
        digest.update(col.encode())
        digest.update(values.tobytes())
    return digest.hexdigest()


def split_skills(value: str) -> list[str]:
    return [s for s in str(value).split(SKILL_SEPARATOR) if s]


def text_with_nul(frame: pd.DataFrame) -> tuple[str, int] | None:
    """(column, 0-based row) of the first text value holding a NUL character, or None. No store
    accepts one (PostgreSQL refuses it), so no edge does either."""
    for col in frame.columns:
        if "\x00" in str(col):
            return str(col), -1
        series = frame[col]
        if not (series.dtype == object or isinstance(series.dtype, pd.StringDtype)):
            continue
        # Ids and labels repeat: look at each distinct value once, then find the row if needed.
        if not any(isinstance(v, str) and "\x00" in v for v in pd.unique(series.dropna())):
            continue
        found = series.map(lambda v: isinstance(v, str) and "\x00" in v).to_numpy(dtype=bool)
        return str(col), int(np.flatnonzero(found)[0])
    return None


def validate_frame(frame: pd.DataFrame, *, source: str = "<memory>") -> pd.DataFrame:
    """Coerce a raw frame to the schema, or raise `DataError` naming what is wrong.

    Row numbers in messages are 1-based data rows (the header is row 0 for tabular files;
    readers that know real line numbers check before calling this)."""
    if frame.empty:
        raise DataError("no interactions (the input is empty)", path=source)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"missing required column(s): {', '.join(missing)}; "
                        f"found: {', '.join(map(str, frame.columns))}", path=source)
    nul = text_with_nul(frame)
    if nul is not None:
        where = "a column name" if nul[1] < 0 else f"column {nul[0]!r}, data row {nul[1] + 1}"
        raise DataError(f"a NUL character in {where}: text may not hold one", path=source)
    out = frame.copy()
    for col in ("learner_id", "item_id"):
        if out[col].isna().any():
            row = int(np.flatnonzero(out[col].isna().to_numpy())[0]) + 1
            raise DataError(f"empty {col} in data row {row}", path=source)
        out[col] = out[col].astype("string").str.strip()
    correct = pd.to_numeric(out["correct"], errors="coerce")
    bad = correct.isna() | ~correct.isin([0, 1])
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"'correct' must be 0 or 1, got {frame['correct'].iloc[row]!r} in data row {row + 1}",
                        path=source)
    out["correct"] = correct.astype("int8")
    if "skill_ids" not in out.columns or out["skill_ids"].isna().all():
        out["skill_ids"] = out["item_id"]
    else:
        out["skill_ids"] = out["skill_ids"].astype("string").fillna(out["item_id"])
    if "timestamp" in out.columns:
        ts = pd.to_datetime(out["timestamp"], errors="coerce", utc=True)
        bad_ts = ts.isna() & out["timestamp"].notna()
        if bad_ts.any():
            row = int(np.flatnonzero(bad_ts.to_numpy())[0])
            raise DataError(f"unreadable timestamp {frame['timestamp'].iloc[row]!r} in data row {row + 1}",
                            path=source)
        outside = out_of_range_timestamps(ts)
        if outside.any():
            row = int(np.flatnonzero(outside)[0])
            raise DataError(f"timestamp {frame['timestamp'].iloc[row]!r} in data row {row + 1} is outside the "
                            f"supported years {timestamp_range_text()}", path=source)
        out["timestamp"] = ts
    if "order" in out.columns:
        order = pd.to_numeric(out["order"], errors="coerce")
        if order.isna().any():
            row = int(np.flatnonzero(order.isna().to_numpy())[0])
            raise DataError(f"'order' must be a number, got {frame['order'].iloc[row]!r} in data row {row + 1}",
                            path=source)
        outside = out_of_range_orders(order)
        if outside.any():
            row = int(np.flatnonzero(outside)[0])
            raise DataError(f"'order' must be between 0 and {MAX_ORDER}, got {frame['order'].iloc[row]!r} "
                            f"in data row {row + 1}", path=source)
        out["order"] = order.astype("int64")
    else:
        # Derive the position from time when there is one, else keep file order (stable sort).
        keys = ["timestamp"] if "timestamp" in out.columns else []
        out["_row"] = np.arange(len(out))
        ordered = out.sort_values(["learner_id", *keys, "_row"], kind="stable")
        ordered["order"] = ordered.groupby("learner_id", sort=False).cumcount().astype("int64")
        out = ordered.drop(columns="_row")
    if "response_time_s" in out.columns:
        rt = pd.to_numeric(out["response_time_s"], errors="coerce")
        if (rt < 0).any():
            row = int(np.flatnonzero((rt < 0).to_numpy())[0])
            raise DataError(f"negative response_time_s in data row {row + 1}", path=source)
        out["response_time_s"] = rt.astype("float64")
    if "grade" in out.columns:
        grade = pd.to_numeric(out["grade"].replace({"K": 0, "k": 0}), errors="coerce")
        out["grade"] = grade.astype("Int64")
    for col in ("subject", "item_type"):
        if col in out.columns:
            out[col] = out[col].astype("string")
    out = out.sort_values(["learner_id", "order"], kind="stable").reset_index(drop=True)
    dup = out.duplicated(["learner_id", "order"])
    if dup.any():
        row = out.loc[dup].iloc[0]
        raise DataError(f"learner {row['learner_id']!r} has two interactions at order {int(row['order'])}",
                        path=source)
    ordered_cols = [c for c in CORE_COLUMNS if c in out.columns]
    return out[ordered_cols + [c for c in out.columns if c not in ordered_cols]]


def make_log(frame: pd.DataFrame, *, source: str = "<memory>", notes: tuple[str, ...] = ()) -> InteractionLog:
    return InteractionLog(validate_frame(frame, source=source), source=source, notes=notes)
