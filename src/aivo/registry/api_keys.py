"""API keys: creation (the token is returned once), verification, listing, revocation, and the
learners a teacher key may read.

A token is `aivo_<key_id>_<secret>`: `key_id` (12 hex characters) is public and names the key
in lists and audits; `secret` is 256 random bits (`secrets.token_urlsafe(32)`). Only the
SHA-256 of the whole token is stored. A random 256-bit secret cannot be guessed or brute-forced
from its hash, so a plain (unkeyed, unsalted) hash is the right tool here; passwords would need
a slow KDF, random keys do not. Verification finds the row by `key_id` and compares digests with
`hmac.compare_digest`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.errors import AuthError, ConflictError, DataError, NotFoundError
from aivo.registry.tables import API_KEY_ROLES, ApiKey, ApiKeyLearner
from aivo.registry.audit import write_audit
from aivo.registry.interactions import ensure_learners
from aivo.registry.tables import Learner
from aivo.registry.records import LearnerRecord, Record

TOKEN_PREFIX = "aivo_"
_KEY_ID_HEX = 12
_TOKEN_RE = re.compile(rf"^{TOKEN_PREFIX}([0-9a-f]{{{_KEY_ID_HEX}}})_([A-Za-z0-9_-]{{43}})$")
_TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class ApiKeyRecord(Record):
    key_id: str
    name: str
    role: str  # admin | service | teacher
    tenant: str
    created_by: str | None
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None
    num_learners: int  # teacher keys: learners on the class list

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True)
class CreatedApiKey(Record):
    key: ApiKeyRecord
    token: str  # shown once, never stored


@dataclass(frozen=True)
class VerifiedKey:
    """What a request learns about its caller: the key's row id, public id, role and tenant."""

    pk: int
    key_id: str
    role: str
    tenant: str
    name: str


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _new_token() -> tuple[str, str]:
    key_id = secrets.token_hex(_KEY_ID_HEX // 2)
    while True:  # the token grammar wants exactly 43 url-safe characters (32 bytes, no padding)
        secret = secrets.token_urlsafe(32)
        if len(secret) == 43:
            return key_id, f"{TOKEN_PREFIX}{key_id}_{secret}"


def check_tenant(tenant: str) -> str:
    if not isinstance(tenant, str) or not _TENANT_RE.match(tenant):
        raise DataError(f"invalid tenant {tenant!r}: 1-64 characters, letters, digits, '.', '_' or '-'")
    return tenant


def _check_role(role: str) -> None:
    if role not in API_KEY_ROLES:
        raise DataError(f"invalid role {role!r}; one of {', '.join(API_KEY_ROLES)}")


def _num_learners(session: Session, pks: Sequence[int]) -> dict[int, int]:
    if not pks:
        return {}
    rows = session.execute(sa.select(ApiKeyLearner.api_key_id, sa.func.count())
                           .where(ApiKeyLearner.api_key_id.in_(list(pks))).group_by(ApiKeyLearner.api_key_id))
    return {pk: n for pk, n in rows}


def _record(row: ApiKey, num_learners: int) -> ApiKeyRecord:
    return ApiKeyRecord(key_id=row.key_id, name=row.name, role=row.role, tenant=row.tenant,
                        created_by=row.created_by, created_at=row.created_at, revoked_at=row.revoked_at,
                        last_used_at=row.last_used_at, num_learners=num_learners)


def _row(session: Session, key_id: str) -> ApiKey:
    row = session.scalar(sa.select(ApiKey).where(ApiKey.key_id == key_id))
    if row is None:
        raise NotFoundError(f"API key {key_id} does not exist")
    return row


def create_api_key(*, session: Session, role: str, tenant: str, name: str = "", learner_ids: Sequence[str] = (),
                   actor: str, clock: Clock = SYSTEM_CLOCK) -> CreatedApiKey:
    """A new key. `learner_ids` (pseudonyms) form a teacher key's class list; learners not yet
    known are created in `tenant` (a roster may come before any interaction). Audited."""
    _check_role(role)
    check_tenant(tenant)
    if learner_ids and role != "teacher":
        raise DataError("only teacher keys carry a learner list (admin and service keys reach the whole tenant)")
    if len(name) > 128:
        raise DataError("the key name is longer than 128 characters")
    key_id, token = _new_token()
    row = ApiKey(key_id=key_id, token_sha256=token_digest(token), name=name, role=role, tenant=tenant,
                 created_by=actor, created_at=clock.now())
    session.add(row)
    session.flush()
    linked = _link(session, row, learner_ids, clock) if learner_ids else 0
    write_audit(session=session, actor=actor, action="apikey.create", target=key_id,
                details={"role": role, "tenant": tenant, "learners": linked}, clock=clock)
    return CreatedApiKey(key=_record(row, linked), token=token)


def _link(session: Session, row: ApiKey, learner_ids: Sequence[str], clock: Clock) -> int:
    pk_of, _created = ensure_learners(session=session, pseudonyms=list(learner_ids), tenant=row.tenant, clock=clock)
    existing = set(session.scalars(sa.select(ApiKeyLearner.learner_id).where(ApiKeyLearner.api_key_id == row.id)))
    new = sorted(set(pk_of.values()) - existing)
    if new:
        session.execute(sa.insert(ApiKeyLearner), [{"api_key_id": row.id, "learner_id": pk} for pk in new])
    return len(new)


def link_learners(*, session: Session, key_id: str, learner_ids: Sequence[str], actor: str,
                  clock: Clock = SYSTEM_CLOCK) -> int:
    """Add learners (pseudonyms) to a teacher key's class list. Returns how many were added."""
    row = _row(session, key_id)
    if row.role != "teacher":
        raise DataError(f"API key {key_id} is a {row.role} key; only teacher keys carry a learner list")
    added = _link(session, row, learner_ids, clock)
    write_audit(session=session, actor=actor, action="apikey.link", target=key_id, details={"added": added},
                clock=clock)
    return added


def unlink_learners(*, session: Session, key_id: str, learner_ids: Sequence[str], actor: str,
                    clock: Clock = SYSTEM_CLOCK) -> int:
    row = _row(session, key_id)
    pks = select_learner_pks(session, learner_ids)
    removed = 0
    if pks:
        removed = session.execute(sa.delete(ApiKeyLearner).where(
            ApiKeyLearner.api_key_id == row.id, ApiKeyLearner.learner_id.in_(pks))).rowcount or 0
    write_audit(session=session, actor=actor, action="apikey.unlink", target=key_id, details={"removed": removed},
                clock=clock)
    return removed


def select_learner_pks(session: Session, learner_ids: Sequence[str]) -> list[int]:
    if not learner_ids:
        return []
    return list(session.scalars(sa.select(Learner.id).where(Learner.pseudonym.in_(list(learner_ids)))))


def list_api_keys(*, session: Session, tenant: str | None = None, include_revoked: bool = False) -> list[ApiKeyRecord]:
    stmt = sa.select(ApiKey).order_by(ApiKey.id)
    if tenant is not None:
        stmt = stmt.where(ApiKey.tenant == tenant)
    if not include_revoked:
        stmt = stmt.where(ApiKey.revoked_at.is_(None))
    rows = list(session.scalars(stmt))
    counts = _num_learners(session, [r.id for r in rows])
    return [_record(r, counts.get(r.id, 0)) for r in rows]


def revoke_api_key(*, session: Session, key_id: str, actor: str, reason: str = "",
                   clock: Clock = SYSTEM_CLOCK) -> ApiKeyRecord:
    row = _row(session, key_id)
    if row.revoked_at is not None:
        raise ConflictError(f"API key {key_id} is already revoked")
    row.revoked_at = clock.now()
    write_audit(session=session, actor=actor, action="apikey.revoke", target=key_id, reason=reason, clock=clock)
    session.flush()
    return _record(row, _num_learners(session, [row.id]).get(row.id, 0))


_SELECT_FOR_VERIFY = sa.select(ApiKey.id, ApiKey.key_id, ApiKey.token_sha256, ApiKey.role, ApiKey.tenant,
                               ApiKey.name, ApiKey.revoked_at).where(ApiKey.key_id == sa.bindparam("key_id"))


def verify_api_key(*, session: Session, token: str) -> VerifiedKey:
    """The key a token belongs to. Raises `AuthError` (one message for every failure, so that a
    caller learns nothing about which part was wrong)."""
    match = _TOKEN_RE.match(token or "")
    row = session.execute(_SELECT_FOR_VERIFY, {"key_id": match.group(1)}).first() if match else None
    # Compare against a dummy digest when the key id is unknown: the time taken does not tell.
    expected = row.token_sha256 if row is not None else "0" * 64
    if not hmac.compare_digest(expected, token_digest(token or "")) or row is None or row.revoked_at is not None:
        raise AuthError("invalid or revoked API key")
    return VerifiedKey(pk=row.id, key_id=row.key_id, role=row.role, tenant=row.tenant, name=row.name)


def touch_api_key(*, session: Session, key_pk: int, clock: Clock = SYSTEM_CLOCK) -> None:
    session.execute(sa.update(ApiKey).where(ApiKey.id == key_pk).values(last_used_at=clock.now()))


def key_may_read_learner(*, session: Session, key_pk: int, learner_pk: int) -> bool:
    return session.scalar(sa.select(sa.literal(1)).where(ApiKeyLearner.api_key_id == key_pk,
                                                         ApiKeyLearner.learner_id == learner_pk)) is not None


def list_key_learners(*, session: Session, key_pk: int, limit: int = 100, offset: int = 0) -> list[LearnerRecord]:
    """The learners on a teacher key's class list, oldest first."""
    stmt = (sa.select(Learner).join(ApiKeyLearner, ApiKeyLearner.learner_id == Learner.id)
            .where(ApiKeyLearner.api_key_id == key_pk).order_by(Learner.id).limit(limit).offset(offset))
    return [LearnerRecord(learner_id=r.pseudonym, tenant=r.tenant, created_at=r.created_at)
            for r in session.scalars(stmt)]
