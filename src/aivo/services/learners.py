"""Learners: raw ids enter AIVO only here (they are pseudonymized before touching the registry),
listing, and the data rights: export everything held about a learner, erase it."""

from __future__ import annotations

from typing import Any

from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.config import Settings
from aivo.data.privacy import pseudonymize_learner_id
from aivo.errors import DataError
from aivo.registry import DeletionResult, LearnerRecord, Registry, delete_learner, export_learner, list_learners
from aivo.registry.api_keys import VerifiedKey, list_key_learners


def pseudonym_for(*, settings: Settings, learner_id: str) -> str:
    """The registry key of a learner given the id a school system knows them by."""
    if not isinstance(learner_id, str) or not learner_id.strip():
        raise DataError("a learner id must be a non-empty string")
    return pseudonymize_learner_id(learner_id, key=settings.resolved_secret_key())


def pseudonym_with_key(learner_id: str, *, key: bytes) -> str:
    """`pseudonym_for` with the secret key already read (a server reads it once per process)."""
    return pseudonymize_learner_id(learner_id, key=key)


def learner_pseudonym(*, settings: Settings, learner_id: str, is_pseudonym: bool) -> str:
    """A command's LEARNER argument as stored: raw ids are pseudonymized, stored pseudonyms kept."""
    return learner_id if is_pseudonym else pseudonym_for(settings=settings, learner_id=learner_id)


def learners_all(*, registry: Registry, tenant: str | None = None, limit: int = 10_000_000) -> list[LearnerRecord]:
    return registry.run(lambda session: list_learners(session=session, tenant=tenant, limit=limit), read_only=True)


def learners_visible_to(*, registry: Registry, key: VerifiedKey, limit: int = 100,
                        offset: int = 0) -> list[LearnerRecord]:
    """Admin and service keys: every learner of the key's tenant. Teacher keys: their class list."""
    def work(session):
        if key.role == "teacher":
            return list_key_learners(session=session, key_pk=key.pk, limit=limit, offset=offset)
        return list_learners(session=session, tenant=key.tenant, limit=limit, offset=offset)

    return registry.run(work, read_only=True)


def export_learner_data(*, registry: Registry, learner_id: str, inline_artifacts: bool = False,
                        clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    """Every row of the learner (pseudonym) in every table, and their artifacts."""
    return registry.run(lambda session: export_learner(session=session, store=registry.store, learner_id=learner_id,
                                                       inline_artifacts=inline_artifacts, clock=clock),
                        read_only=True)


def erase_learner(*, registry: Registry, learner_id: str, actor: str, reason: str = "",
                  clock: Clock = SYSTEM_CLOCK) -> DeletionResult:
    """Delete the learner's (pseudonym) interactions, models, sessions, ledger and artifacts. The
    audit log keeps counts and the tenant, never the pseudonym."""
    return registry.run(lambda session: delete_learner(session=session, store=registry.store, learner_id=learner_id,
                                                       actor=actor, reason=reason, clock=clock))
