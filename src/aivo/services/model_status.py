"""The status of the Main Brain (a version, or the family `aivo-main-brain` = the active one):
the version record, its training state and its latest drift report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aivo.registry import MainVersionRecord, Registry, get_active_main_version, get_main_version
from aivo.training.drift_service import list_drift_reports
from aivo.training.jobs import last_finished_training, open_job_for_model
from aivo.training.runs import MAIN_BRAIN_MODEL_ID

ACTIVE_ALIASES = frozenset({MAIN_BRAIN_MODEL_ID, "active"})


@dataclass(frozen=True)
class ModelStatus:
    model_id: str
    version: MainVersionRecord | None  # None: no active version yet
    training: dict[str, Any] | None  # the open trainer job of the family, if any
    last_training: str | None
    drift: dict[str, Any] | None  # the latest report of this version (or of the family)
    details: dict[str, Any] = field(default_factory=dict)


def model_status(*, registry: Registry, model_id: str) -> ModelStatus:
    """`model_id`: a version name, or `aivo-main-brain` / `active`. NotFoundError for an unknown version."""

    def read(session) -> ModelStatus:
        record = (get_active_main_version(session=session) if model_id in ACTIVE_ALIASES
                  else get_main_version(session=session, version=model_id))
        job = open_job_for_model(session=session, model_id=MAIN_BRAIN_MODEL_ID)
        last = last_finished_training(session=session, model_id=MAIN_BRAIN_MODEL_ID)
        reports = list_drift_reports(session=session, model_id=MAIN_BRAIN_MODEL_ID if record is None
                                     or model_id in ACTIVE_ALIASES else record.version, limit=1)
        drift = None
        if reports:
            r = reports[0]
            drift = {"computed_at": r.computed_at.isoformat(), "version": r.version, "score": r.score,
                     "threshold": r.threshold, "drifted": r.drifted}
        training = None if job is None else {"job_id": job.id, "kind": job.kind, "status": job.status,
                                             "reason": job.reason}
        return ModelStatus(model_id=model_id, version=record, training=training,
                           last_training=last.isoformat() if last else None, drift=drift)

    return registry.run(read, read_only=True)
