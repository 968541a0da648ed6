"""Main Brain versions for operators: list, show, status, promote, roll back (GET /v1/models,
/v1/model/{id}/status, POST .../promote, POST /v1/models/rollback; aivo registry list | show |
promote | rollback). Each call is one registry transaction."""

from __future__ import annotations

from typing import Any

from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.registry import (
    MainVersionRecord,
    Registry,
    get_active_main_version,
    get_main_version,
    list_main_versions,
    promote_main_version,
    rollback_main_version,
)
from aivo.services.drift import list_drift_reports
from aivo.training.jobs import open_job_for_model
from aivo.training.retraining import last_trained_at
from aivo.training.runs import MAIN_BRAIN_MODEL_ID

ACTIVE_ALIASES = frozenset({MAIN_BRAIN_MODEL_ID, "active"})  # the family name means its active version


def list_versions(*, registry: Registry, status: str | None = None, limit: int = 100,
                  offset: int = 0) -> list[MainVersionRecord]:
    """Newest first."""
    return registry.run(lambda session: list_main_versions(session=session, status=status, limit=limit,
                                                           offset=offset), read_only=True)


def get_version(*, registry: Registry, version: str) -> MainVersionRecord:
    """NotFoundError for an unknown version."""
    return registry.run(lambda session: get_main_version(session=session, version=version), read_only=True)


def active_version(*, registry: Registry, attempts: int = 5) -> MainVersionRecord | None:
    return registry.run(lambda session: get_active_main_version(session=session), read_only=True,
                        attempts=attempts)


def find_version(*, registry: Registry, model_id: str) -> MainVersionRecord | None:
    """`model_id` is a version name, or the family name (`aivo-main-brain`, `active`) for the
    active version (None when there is none)."""
    if model_id in ACTIVE_ALIASES:
        return active_version(registry=registry)
    return get_version(registry=registry, version=model_id)


def promote_version(*, registry: Registry, version: str, actor: str, reason: str,
                    clock: Clock = SYSTEM_CLOCK) -> MainVersionRecord:
    """Make `version` the active one (the current one is archived). Audited."""
    return registry.run(lambda session: promote_main_version(session=session, version=version, actor=actor,
                                                             reason=reason, clock=clock))


def rollback_version(*, registry: Registry, actor: str, reason: str, to_version: str | None = None,
                     clock: Clock = SYSTEM_CLOCK) -> MainVersionRecord:
    """Reactivate `to_version`, by default the version active before the current one. Audited."""
    return registry.run(lambda session: rollback_main_version(session=session, actor=actor, reason=reason,
                                                              to_version=to_version, clock=clock))


def training_state(*, registry: Registry) -> dict[str, Any]:
    """The Main Brain's open training job, last training and latest drift check (the `details`
    of GET /v1/model/{id}/status)."""
    def read(session) -> dict[str, Any]:
        job = open_job_for_model(session=session, model_id=MAIN_BRAIN_MODEL_ID)
        last = last_trained_at(session=session, model_id=MAIN_BRAIN_MODEL_ID)
        reports = list_drift_reports(session=session, model_id=MAIN_BRAIN_MODEL_ID, limit=1)
        drift = None
        if reports:
            r = reports[0]
            drift = {"score": r.score, "drifted": r.drifted, "threshold": r.threshold, "version": r.version,
                     "computed_at": r.computed_at.isoformat()}
        return {"training": {"open_job": None if job is None else {"id": job.id, "status": job.status},
                             "last_trained_at": last.isoformat() if last else None},
                "drift": drift}

    return registry.run(read, read_only=True)
