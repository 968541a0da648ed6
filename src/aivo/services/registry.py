"""Operating the registry: its schema (aivo db upgrade | status), statistics, learner models,
garbage collection and verification of the artifact store (aivo registry stats | list | show |
gc | verify, GET /stats, /metrics, /health). Each call is one transaction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa

from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.config import Settings
from aivo.registry import (
    ImportResult,
    LearnerModelHistory,
    LearnerModelRecord,
    Registry,
    RegistryStatistics,
    collect_garbage,
    get_statistics,
    import_interaction_file,
    learner_model_history,
    list_learner_models,
    upgrade_database,
    verify_registry,
)
from aivo.registry.migrate import current_revision, head_revision
from aivo.services.runtime import open_registry

_PROBE_DIGEST = "0" * 64  # an artifact that never exists: asking for it is a cheap round trip


def _database(registry: Registry) -> str:
    return registry.engine.url.render_as_string(hide_password=True)


def upgrade_schema(*, settings: Settings, revision: str = "head") -> dict[str, Any]:
    """Create or migrate the schema (to the newest revision by default)."""
    registry = open_registry(settings, check_schema=False)
    result = upgrade_database(registry.engine, revision=revision)
    return {"database": _database(registry), "from_revision": result.from_revision,
            "to_revision": result.to_revision, "changed": result.changed}


def schema_status(*, settings: Settings) -> dict[str, Any]:
    """The database's schema revision and the one this AIVO needs."""
    registry = open_registry(settings, check_schema=False)
    current, head = current_revision(registry.engine), head_revision()
    return {"database": _database(registry), "current_revision": current, "head_revision": head,
            "up_to_date": current == head}


def check_database(*, registry: Registry, detailed: bool) -> str:
    """Raises when the database does not answer or its schema is outdated (GET /health). Never
    names the URL; the schema revision only when `detailed` (it dates the deployment)."""
    registry.run(lambda session: session.execute(sa.text("SELECT 1")).scalar_one(), read_only=True, attempts=1)
    revision, head = current_revision(registry.engine), head_revision()
    if revision != head:
        if not detailed:
            raise RuntimeError("the schema is outdated: run `aivo db upgrade`")
        raise RuntimeError(f"schema at revision {revision}, this AIVO needs {head}: run `aivo db upgrade`")
    return f"{registry.engine.dialect.name}, schema {revision}" if detailed else registry.engine.dialect.name


def check_store(*, registry: Registry) -> str:
    """Raises when the artifact folder or bucket cannot be reached. No paths or bucket names."""
    registry.store.exists(_PROBE_DIGEST)
    return "local folder" if registry.store.is_local else registry.store.url.split("://", 1)[0]


def statistics(*, registry: Registry) -> RegistryStatistics:
    return registry.run(lambda session: get_statistics(session=session), read_only=True)


def learner_models(*, registry: Registry, status: str | None = None, kind: str | None = None,
                   limit: int = 50, offset: int = 0) -> list[LearnerModelRecord]:
    options: dict[str, Any] = {"status": status, "limit": limit, "offset": offset}
    if kind is not None:
        options["kind"] = kind
    return registry.run(lambda session: list_learner_models(session=session, **options), read_only=True)


def learner_history(*, registry: Registry, learner_id: str, kind: str = "brain") -> LearnerModelHistory:
    """A learner's (pseudonym) model and its training sessions."""
    return registry.run(lambda session: learner_model_history(session=session, learner_id=learner_id, kind=kind),
                        read_only=True)


def garbage_collection(*, registry: Registry, apply: bool, min_age_s: float, actor: str,
                       clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    """Unreferenced artifacts older than `min_age_s`: reported, and deleted with `apply`."""
    with registry.session() as session:
        return collect_garbage(session=session, store=registry.store, dry_run=not apply, min_age_s=min_age_s,
                               actor=actor, clock=clock).to_dict()


def verify(*, registry: Registry, deep: bool = False) -> dict[str, Any]:
    """Every referenced artifact exists (and with `deep`, hashes to its name)."""
    with registry.session(read_only=True) as session:
        return verify_registry(session=session, store=registry.store, deep=deep).to_dict()


def import_file(*, registry: Registry, settings: Settings, path: str | Path, format: str = "auto",
                mapping: dict[str, str] | None = None, tenant: str = "default") -> ImportResult:
    """Import an interaction file: learner ids pseudonymized, idempotent per (learner, order)."""
    with registry.session() as session:
        return import_interaction_file(session=session, path=path, secret_key=settings.resolved_secret_key(),
                                       format=format, mapping=mapping, tenant=tenant)
