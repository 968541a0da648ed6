"""Ingest a batch of interactions that arrived over the API: validate, pseudonymize, scrub, store.

The batch comes in columns (one sequence per field, as the API router collects them). Raw
learner ids are replaced by their keyed pseudonyms first, before validation or storage; free
text (string values of `extra`) is PII-scrubbed. The batch is stored in one transaction: a
bad batch writes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.config import Settings
from aivo.data.privacy import pseudonymize_learner_ids, scrub_frame
from aivo.data.schema import CORE_COLUMNS, make_log
from aivo.errors import DataError, PayloadTooLargeError
from aivo.registry import ImportResult, Registry, import_interactions
from aivo.registry.tables import DEFAULT_TENANT

log = logging.getLogger(__name__)

_OPTIONAL = ("skill_ids", "timestamp", "response_time_s", "subject", "grade", "item_type")


@dataclass(frozen=True)
class IngestResult:
    result: ImportResult
    learner_ids: list[str] = field(default_factory=list)  # pseudonyms of the learners in the batch


def _batch_frame(columns: Mapping[str, Sequence[Any]], *, pseudonyms: list[str]) -> pd.DataFrame:
    data: dict[str, Any] = {"learner_id": pseudonyms, "item_id": list(columns["item_id"]),
                            "correct": list(columns["correct"]), "order": list(columns["order"])}
    for name in _OPTIONAL:
        values = columns.get(name)
        if values is not None and any(v is not None for v in values):
            data[name] = list(values)
    frame = pd.DataFrame(data)
    extras = columns.get("extra")
    if extras is not None and any(extras):
        keys = sorted({k for e in extras if e for k in e})
        clashing = [k for k in keys if k in CORE_COLUMNS or k == "extra"]
        if clashing:
            raise DataError(f"extra field(s) {', '.join(clashing)} clash with interaction fields; "
                            "send them as fields of the interaction, not in 'extra'")
        for key in keys:
            frame[key] = pd.Series([e.get(key) if e else None for e in extras], dtype="object")
    return frame


def ingest_interactions(*, registry: Registry, settings: Settings, columns: Mapping[str, Sequence[Any]],
                        tenant: str = DEFAULT_TENANT, clock: Clock = SYSTEM_CLOCK,
                        source: str = "api") -> IngestResult:
    """Store one batch. `columns` maps field names (aivo.data.schema, plus `extra`: a dict or
    None per row) to equally long sequences. Raises `PayloadTooLargeError` above
    `settings.max_ingest_batch` rows, `DataError` for invalid rows, `ConflictError` when a
    learner belongs to another tenant; nothing is written in those cases."""
    raw_ids = list(columns.get("learner_id") or [])
    if not raw_ids:
        raise DataError("the batch holds no interactions")
    if len(raw_ids) > settings.max_ingest_batch:
        raise PayloadTooLargeError(f"the batch holds {len(raw_ids):,} interactions; at most "
                                   f"{settings.max_ingest_batch:,} per request (AIVO_MAX_INGEST_BATCH): "
                                   "split it into several requests")
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) != 1:
        raise DataError(f"columns of different lengths: {lengths}")
    pseudonyms = pseudonymize_learner_ids(raw_ids, key=settings.resolved_secret_key())
    frame = _batch_frame(columns, pseudonyms=pseudonyms)
    frame = scrub_frame(frame, names=settings.pii_names)
    interaction_log = make_log(frame, source=source)

    def work(session) -> ImportResult:
        return import_interactions(session=session, log=interaction_log, pseudonymize=lambda p: p, tenant=tenant,
                                   clock=clock)

    result = registry.run(work)
    return IngestResult(result=result, learner_ids=sorted(set(pseudonyms)))
