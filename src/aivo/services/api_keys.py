"""API keys: create (the token is shown once), list, revoke, teachers' class lists (aivo apikey
...), verification for the API, and the one access rule for a learner: a key reaches only its
tenant's learners (another tenant's learner reads exactly like one that does not exist), a
teacher key only the learners on its class list, a counsellor key no learner record at all."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.errors import ForbiddenError, NotFoundError
from aivo.registry import Registry
from aivo.registry.api_keys import (
    ApiKeyRecord,
    CreatedApiKey,
    VerifiedKey,
    create_api_key,
    key_may_read_learner,
    link_learners,
    list_api_keys,
    revoke_api_key,
    token_digest,
    touch_api_key,
    unlink_learners,
    verify_api_key,
)
from aivo.registry.tables import Learner

__all__ = ["LEARNER_NOT_FOUND", "LearnerRef", "VerifiedKey", "check_learner_access", "create_key", "keys",
           "learner_for_key", "learner_tenant", "relink", "revoke_key", "token_digest", "touch_key", "verify_key"]

LEARNER_NOT_FOUND = "learner not found (no learner with this id in this key's tenant)"


@dataclass(frozen=True)
class LearnerRef:
    """A learner the caller may act for: registry row id, pseudonym and tenant."""

    pk: int
    pseudonym: str
    tenant: str


# --- administration ----------------------------------------------------------------------------

def create_key(*, registry: Registry, role: str, tenant: str, name: str = "", learner_ids: Sequence[str] = (),
               actor: str) -> CreatedApiKey:
    """A new key; its token is in the result only (never stored)."""
    return registry.run(lambda session: create_api_key(session=session, role=role, tenant=tenant, name=name,
                                                       learner_ids=learner_ids, actor=actor))


def keys(*, registry: Registry, tenant: str | None = None, include_revoked: bool = False) -> list[ApiKeyRecord]:
    return registry.run(lambda session: list_api_keys(session=session, tenant=tenant,
                                                      include_revoked=include_revoked), read_only=True)


def revoke_key(*, registry: Registry, key_id: str, actor: str, reason: str = "") -> ApiKeyRecord:
    return registry.run(lambda session: revoke_api_key(session=session, key_id=key_id, actor=actor, reason=reason))


def relink(*, registry: Registry, key_id: str, learner_ids: Sequence[str], actor: str, add: bool) -> int:
    """Add learners (pseudonyms) to a teacher key's class list, or remove them; returns how many."""
    change = link_learners if add else unlink_learners
    return registry.run(lambda session: change(session=session, key_id=key_id, learner_ids=learner_ids,
                                               actor=actor))


# --- the API's checks ----------------------------------------------------------------------------

def verify_key(*, registry: Registry, token: str) -> VerifiedKey:
    """The key a token stands for (AuthError for an unknown or revoked one)."""
    return registry.run(lambda session: verify_api_key(session=session, token=token), read_only=True)


def touch_key(*, registry: Registry, key_pk: int, clock: Clock = SYSTEM_CLOCK) -> None:
    """Record that the key was used (a hint: the API does it at most once a minute)."""
    registry.run(lambda session: touch_api_key(session=session, key_pk=key_pk, clock=clock))


def check_learner_access(key: VerifiedKey, *, tenant: str | None, linked: bool | Callable[[], bool]) -> None:
    """The one access rule for a learner (tenant None: no such learner). `linked` is a bool, or
    a callable answering whether a teacher key's class list holds the learner."""
    if tenant is None or tenant != key.tenant:
        raise NotFoundError(LEARNER_NOT_FOUND)
    if key.role == "counsellor":  # counsellors see the school's safety alerts, not learners' records
        raise ForbiddenError("a counsellor key reads safety alerts only (/v1/tutor/alerts)")
    if key.role == "teacher" and not (linked() if callable(linked) else linked):
        raise ForbiddenError("this teacher key is not linked to this learner "
                             "(add it with `aivo apikey link KEY_ID LEARNER_ID`)")


_SELECT_LEARNER = sa.select(Learner.id, Learner.pseudonym, Learner.tenant).where(
    Learner.pseudonym == sa.bindparam("pseudonym"))


def learner_for_key(*, registry: Registry, key: VerifiedKey, pseudonym: str) -> LearnerRef:
    """The learner if `key` may read it (blocking). Unknown and other-tenant learners raise the
    same NotFoundError; a teacher key's learner outside its class list raises ForbiddenError."""
    def work(session) -> LearnerRef:
        row = session.execute(_SELECT_LEARNER, {"pseudonym": pseudonym}).first()
        check_learner_access(key, tenant=None if row is None else row.tenant,
                             linked=lambda: key_may_read_learner(session=session, key_pk=key.pk, learner_pk=row.id))
        return LearnerRef(pk=row.id, pseudonym=row.pseudonym, tenant=row.tenant)

    return registry.run(work, read_only=True)


def learner_tenant(*, registry: Registry, pseudonym: str) -> str | None:
    """The learner's tenant, or None when no such learner exists (blocking)."""
    return registry.run(lambda session: session.scalar(sa.select(Learner.tenant)
                                                       .where(Learner.pseudonym == pseudonym)), read_only=True)
