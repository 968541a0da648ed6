"""One learner's stored history as plain arrays: what serving reads of it, appendable.

Serving a recommendation reads a few columns of the learner's history (items, skills, answers,
times, subject and grade); a pandas frame costs more to handle than the computation on it.
`LearnerHistory.from_frame` takes the rows of a validated `InteractionLog` frame (or stored rows
read back the same way) in order; `concat` appends newer rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from aivo.data.schema import split_skills

NO_TIME = np.iinfo(np.int64).min  # a row without a timestamp


def _column(frame: pd.DataFrame, name: str) -> list:
    return frame[name].tolist() if name in frame.columns else [None] * len(frame)


def _missing(value) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and np.isnan(value))


@dataclass(frozen=True)
class LearnerHistory:
    order: np.ndarray  # (T,) int64, increasing
    item_id: np.ndarray  # (T,) str
    skill_ids: np.ndarray  # (T,) str, ';'-separated
    correct: np.ndarray  # (T,) int8
    time_ns: np.ndarray  # (T,) int64 ns since the epoch, UTC (NO_TIME: none)
    subject: np.ndarray  # (T,) str or None
    grade: np.ndarray  # (T,) float64 (NaN: none)
    item_type: np.ndarray  # (T,) str or None

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> "LearnerHistory":
        """Rows with the schema's columns (`aivo.data.schema`), sorted by `order`. Missing
        skill_ids are the item id, as `validate_frame` makes them."""
        items = [str(v).strip() for v in frame["item_id"].tolist()]
        skills = [item if _missing(s) else str(s) for item, s in zip(items, _column(frame, "skill_ids"))]
        times = [NO_TIME if _missing(t) else pd.Timestamp(t).value for t in _column(frame, "timestamp")]
        grades = [np.nan if _missing(g) else float(0 if g in ("K", "k") else g) for g in _column(frame, "grade")]
        return cls(order=np.asarray(frame["order"].tolist(), dtype=np.int64),
                   item_id=np.array(items, dtype=object), skill_ids=np.array(skills, dtype=object),
                   correct=np.asarray(frame["correct"].tolist(), dtype=np.int8),
                   time_ns=np.array(times, dtype=np.int64),
                   subject=np.array([None if _missing(s) else str(s) for s in _column(frame, "subject")], dtype=object),
                   grade=np.array(grades, dtype=np.float64),
                   item_type=np.array([None if _missing(s) else str(s) for s in _column(frame, "item_type")],
                                      dtype=object))

    @classmethod
    def from_rows(cls, rows: list[tuple]) -> "LearnerHistory":
        """Rows (order, item_id, skill_ids, correct, timestamp in ns or None, subject, grade,
        item_type) as the registry reads them back (`aivo.registry.StoredRow`), in order."""
        columns = list(zip(*rows)) if rows else [()] * 8
        order, items, skills, correct, times, subjects, grades, types = columns
        return cls(order=np.array(order, dtype=np.int64), item_id=np.array(items, dtype=object),
                   skill_ids=np.array(skills, dtype=object), correct=np.array(correct, dtype=np.int8),
                   time_ns=np.array([NO_TIME if t is None else t for t in times], dtype=np.int64),
                   subject=np.array(subjects, dtype=object),
                   grade=np.array([np.nan if g is None else g for g in grades], dtype=np.float64),
                   item_type=np.array(types, dtype=object))

    def __len__(self) -> int:
        return len(self.order)

    def concat(self, newer: "LearnerHistory") -> "LearnerHistory":
        return LearnerHistory(*(np.concatenate([getattr(self, f), getattr(newer, f)]) for f in
                                ("order", "item_id", "skill_ids", "correct", "time_ns", "subject", "grade",
                                 "item_type")))

    @property
    def has_item_type(self) -> bool:
        """Whether any row has an item type (then rows without one read as '<none>', else the
        history has no item type at all)."""
        return any(v is not None for v in self.item_type.tolist())

    @property
    def last_position(self) -> int | None:
        return int(self.order[-1]) if len(self.order) else None

    def subjects(self) -> frozenset[str]:
        return frozenset(s for s in self.subject.tolist() if s is not None)

    def last_grade(self) -> int | None:
        known = np.flatnonzero(~np.isnan(self.grade))
        return int(self.grade[known[-1]]) if len(known) else None

    def skill_lists(self) -> list[list[str]]:
        return [split_skills(s) for s in self.skill_ids.tolist()]

    def days(self) -> np.ndarray:
        """(T,) days since the Unix epoch (NaN: no timestamp), as `pd.Timedelta.total_seconds`."""
        known = self.time_ns != NO_TIME
        return np.where(known, self.time_ns / 1e9, np.nan) / 86_400.0
