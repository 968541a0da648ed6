"""Dashboard sessions: create, resolve, revoke (repository functions, session injected).

A session id is 256 random bits (`secrets.token_urlsafe(32)`); only its SHA-256 is stored. As
for API keys, a random 256-bit value cannot be recovered from its hash, so a plain hash is the
right tool (a slow KDF is for passwords). A session resolves to the API key it was opened with,
and only while that key is not revoked, the session is neither revoked nor past its absolute
expiry, and it was seen within the idle timeout.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.errors import AuthError
from aivo.registry.api_keys import VerifiedKey, token_digest
from aivo.registry.tables import ApiKey, DashboardSession

SESSION_EXPIRED = "your session has ended: sign in again"
_TOUCH_EVERY = timedelta(seconds=60)  # last_seen_at is written once a minute at most
_MAX_ID_CHARS = 128


@dataclass(frozen=True)
class DashboardSessionRecord:
    id: int
    key: VerifiedKey
    created_at: datetime
    expires_at: datetime
    last_seen_at: datetime


def create_dashboard_session(*, session: Session, key: VerifiedKey, lifetime: timedelta,
                             clock: Clock = SYSTEM_CLOCK) -> tuple[str, DashboardSessionRecord]:
    """A new session for `key`: (the session id for the cookie, shown once; the record)."""
    session_id = secrets.token_urlsafe(32)
    now = clock.now()
    row = DashboardSession(session_sha256=token_digest(session_id), api_key_id=key.pk, created_at=now,
                           expires_at=now + lifetime, last_seen_at=now)
    session.add(row)
    session.flush()
    return session_id, DashboardSessionRecord(row.id, key, now, row.expires_at, now)


_SELECT = (sa.select(DashboardSession, ApiKey.key_id, ApiKey.role, ApiKey.tenant, ApiKey.name, ApiKey.revoked_at)
           .join(ApiKey, ApiKey.id == DashboardSession.api_key_id))


def resolve_dashboard_session(*, session: Session, session_id: str, idle: timedelta,
                              clock: Clock = SYSTEM_CLOCK) -> DashboardSessionRecord:
    """The live session with this id, or AuthError (one message whatever the reason). Refreshes
    `last_seen_at` (at most once a minute)."""
    if not session_id or len(session_id) > _MAX_ID_CHARS:
        raise AuthError(SESSION_EXPIRED)
    found = session.execute(_SELECT.where(DashboardSession.session_sha256 == token_digest(session_id))).first()
    now = clock.now()
    if found is None:
        raise AuthError(SESSION_EXPIRED)
    row, key_id, role, tenant, name, key_revoked = found
    if row.revoked_at is not None or key_revoked is not None or now >= row.expires_at \
            or now - row.last_seen_at > idle:
        raise AuthError(SESSION_EXPIRED)
    if now - row.last_seen_at >= _TOUCH_EVERY:
        session.execute(sa.update(DashboardSession).where(DashboardSession.id == row.id).values(last_seen_at=now))
    key = VerifiedKey(pk=row.api_key_id, key_id=key_id, role=role, tenant=tenant, name=name)
    return DashboardSessionRecord(row.id, key, row.created_at, row.expires_at, now)


def revoke_dashboard_session(*, session: Session, session_id: str, clock: Clock = SYSTEM_CLOCK) -> bool:
    """End the session (logout). False when there was no live session with this id."""
    if not session_id or len(session_id) > _MAX_ID_CHARS:
        return False
    result = session.execute(sa.update(DashboardSession)
                             .where(DashboardSession.session_sha256 == token_digest(session_id),
                                    DashboardSession.revoked_at.is_(None))
                             .values(revoked_at=clock.now()))
    return bool(result.rowcount)


def purge_dashboard_sessions(*, session: Session, older_than: timedelta, clock: Clock = SYSTEM_CLOCK) -> int:
    """Delete sessions that ended (expired or revoked) more than `older_than` ago."""
    cutoff = clock.now() - older_than
    result = session.execute(sa.delete(DashboardSession).where(sa.or_(
        DashboardSession.expires_at < cutoff, DashboardSession.revoked_at < cutoff)))
    return int(result.rowcount or 0)
