"""Signing in to the dashboard: a server-side session instead of the API key in a cookie.

    opened = sign_in(registry=..., settings=..., token="aivo_...", clock=...)   # audited
    key = session_key(registry=..., settings=..., session_id=cookie, clock=...)  # every request
    sign_out(registry=..., session_id=cookie, clock=...)                       # audited, revoked

CSRF: every form that changes something carries `csrf_token(secret, session_id)`, an HMAC-SHA256
of the session id under AIVO_SECRET_KEY (the OWASP "HMAC-based token" pattern): an attacker's
page cannot read it (HttpOnly cookie, same-origin policy) and the server needs no storage to
check it. The sign-in form carries `login_csrf_token(secret, nonce)` for a random nonce set in a
short-lived cookie by the form itself (signed double submit), so a third-party page cannot sign
a browser in with the attacker's key.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta

from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.config import Settings
from aivo.errors import AuthError, ForbiddenError
from aivo.registry import Registry, write_audit
from aivo.registry.api_keys import VerifiedKey, verify_api_key
from aivo.registry.dashboard_sessions import (DashboardSessionRecord, create_dashboard_session,
                                              purge_dashboard_sessions, resolve_dashboard_session,
                                              revoke_dashboard_session)

log = logging.getLogger(__name__)
DASHBOARD_ROLES = ("admin", "service", "teacher", "counsellor")
SIGN_IN_FAILED = "That access key was not accepted. Check it with your administrator (it may have been revoked)."
_MAX_TOKEN_CHARS = 256
_KEEP_ENDED = timedelta(days=7)  # ended sessions are deleted a week later


@dataclass(frozen=True)
class OpenedSession:
    session_id: str  # for the cookie; never stored
    key: VerifiedKey
    max_age_s: int


def _mac(secret: bytes, purpose: str, value: str) -> str:
    return hmac.new(secret, f"aivo-dashboard:{purpose}:{value}".encode(), hashlib.sha256).hexdigest()


def csrf_token(secret: bytes, session_id: str) -> str:
    return _mac(secret, "csrf", session_id)


def login_nonce() -> str:
    return secrets.token_urlsafe(24)


def login_csrf_token(secret: bytes, nonce: str) -> str:
    return _mac(secret, "login", nonce)


def check_token(expected: str, presented: str | None) -> None:
    """ForbiddenError unless the form's token is the expected one (constant-time compare)."""
    if not presented or not hmac.compare_digest(expected, presented):
        raise ForbiddenError("this form has expired or did not come from this dashboard: reload the page and "
                             "try again")


def sign_in(*, registry: Registry, settings: Settings, token: str, clock: Clock = SYSTEM_CLOCK) -> OpenedSession:
    """Verify the access key and open a session. AuthError with one plain message for any bad
    key; ForbiddenError for a key whose role has no dashboard."""
    token = (token or "").strip()
    if not token or len(token) > _MAX_TOKEN_CHARS:
        raise AuthError(SIGN_IN_FAILED)
    lifetime = timedelta(hours=settings.dashboard_session_hours)

    def work(session) -> OpenedSession:
        try:
            key = verify_api_key(session=session, token=token)
        except AuthError:
            raise AuthError(SIGN_IN_FAILED) from None
        if key.role not in DASHBOARD_ROLES:
            raise ForbiddenError(f"a {key.role} key cannot open the dashboard")
        purge_dashboard_sessions(session=session, older_than=_KEEP_ENDED, clock=clock)
        session_id, _record = create_dashboard_session(session=session, key=key, lifetime=lifetime, clock=clock)
        write_audit(session=session, actor=f"apikey:{key.key_id}", action="dashboard.login", target=key.key_id,
                    details={"role": key.role, "tenant": key.tenant}, clock=clock)
        return OpenedSession(session_id=session_id, key=key, max_age_s=int(lifetime.total_seconds()))

    opened = registry.run(work)
    log.info("dashboard: key %s (%s) signed in", opened.key.key_id, opened.key.role)
    return opened


def session_key(*, registry: Registry, settings: Settings, session_id: str,
                clock: Clock = SYSTEM_CLOCK) -> DashboardSessionRecord:
    """The live session (and its key) for a cookie's id, or AuthError."""
    idle = timedelta(minutes=settings.dashboard_idle_minutes)
    return registry.run(lambda session: resolve_dashboard_session(session=session, session_id=session_id, idle=idle,
                                                                  clock=clock))


def sign_out(*, registry: Registry, session_id: str, key: VerifiedKey | None, clock: Clock = SYSTEM_CLOCK) -> bool:
    """Revoke the session (whatever state it is in). Audited when it was live."""

    def work(session) -> bool:
        ended = revoke_dashboard_session(session=session, session_id=session_id, clock=clock)
        if ended and key is not None:
            write_audit(session=session, actor=f"apikey:{key.key_id}", action="dashboard.logout",
                        target=key.key_id, clock=clock)
        return ended

    return registry.run(work)
