"""The item catalog a Main Brain carries: what can be recommended, and to whom.

`item_catalog` summarizes the training interactions (one row per item); `catalog_frame` turns a
brain's stored catalog into a frame once per catalog (serving asks for it on every
recommendation) and keeps a few in memory.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import pandas as pd

from aivo.brain.bundle import TrainedBrain
from aivo.data.schema import InteractionLog
from aivo.errors import DataError

_CACHE_SIZE = 8
_cache_lock = threading.Lock()


def item_catalog(log: InteractionLog) -> list[dict[str, str]]:
    """One row per item: its most frequent skill_ids, item_type, subject and grade in `log`.
    Stored with the brain so recommendations know what can be served (and to whom) without
    scanning interactions."""
    frame = log.frame
    cols = ["item_id", "skill_ids"] + [c for c in ("item_type", "subject", "grade") if c in frame.columns]
    view = frame[cols].astype("string").fillna("")
    counts = view.value_counts(sort=True).reset_index(name="n")
    first = counts.drop_duplicates("item_id", keep="first").sort_values("item_id")
    return [{c: str(row[c]) for c in cols} for _, row in first.iterrows()]


_catalogs: "OrderedDict[int, tuple[list, pd.DataFrame]]" = OrderedDict()  # id(rows) -> (rows, frame)


def catalog_frame(brain: TrainedBrain) -> pd.DataFrame:
    """The brain's item catalog as a frame (built once per catalog: serving asks for it on every
    recommendation). Treat it as read-only."""
    rows = brain.info.get("item_catalog")
    if not rows:
        raise DataError("this Main Brain carries no item catalog; retrain it with `aivo train-main`")
    with _cache_lock:
        cached = _catalogs.get(id(rows))
        if cached is not None and cached[0] is rows:  # the entry holds `rows`, so its id is not reused
            _catalogs.move_to_end(id(rows))
            return cached[1]
    frame = _build_catalog_frame(rows)
    with _cache_lock:
        _catalogs[id(rows)] = (rows, frame)
        while len(_catalogs) > _CACHE_SIZE:
            _catalogs.popitem(last=False)
    return frame


def _build_catalog_frame(rows: list) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    for column in ("item_type", "subject"):
        if column in frame.columns:
            frame[column] = frame[column].replace("", pd.NA)
    if "grade" in frame.columns:
        frame["grade"] = pd.to_numeric(frame["grade"], errors="coerce").astype("Int64")
    return frame
