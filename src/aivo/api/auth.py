"""API-key authentication, roles and tenant-scoped access to learners.

- A request presents its key as `Authorization: Bearer <token>` or `X-API-Key: <token>`. The
  dashboard's pages also accept its own session cookie (`aivo_session`: an opaque session id,
  never the key; aivo.services.dashboard_sessions), on /dashboard paths only.
- Roles: `admin` (every endpoint), `service` (ingest and read), `teacher` (read the learners on
  its class list: their status and recommendations).
- Tenants: a key reaches only learners of its own tenant. A learner of another tenant is
  answered exactly like a learner that does not exist (404), so a key cannot probe other
  tenants. A teacher asking for a learner of its tenant that is not on its list gets 403.

Verified keys are remembered per process for `AIVO_API_KEY_CACHE_S` seconds (default 5), so a
revocation takes effect within that delay without a database round trip per request.
"""

from __future__ import annotations

import logging
import threading
import time
from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, RedirectResponse

from aivo.clock import Clock
from aivo.errors import AuthError, ForbiddenError
from aivo.registry import Registry
from aivo.services.api_keys import VerifiedKey, token_digest, touch_key, verify_key
from aivo.services.dashboard_sessions import session_key

log = logging.getLogger(__name__)

SESSION_COOKIE = "aivo_session"
_TOUCH_EVERY_S = 60.0  # last_used_at is a hint, not an audit trail: one write a minute at most
_MAX_CACHED_KEYS = 10_000


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = request.headers.get("x-api-key")
    if key:
        return key.strip()
    return None


class KeyVerifier:
    """Token -> VerifiedKey, with a short per-process cache keyed by the token's digest."""

    def __init__(self, *, registry: Registry, clock: Clock, cache_s: float):
        self.registry = registry
        self.clock = clock
        self.cache_s = cache_s
        self._cache: dict[str, tuple[VerifiedKey, float]] = {}
        self._touched: dict[int, float] = {}
        self._lock = threading.Lock()

    def cached(self, token: str) -> VerifiedKey | None:
        if self.cache_s <= 0:
            return None
        with self._lock:
            hit = self._cache.get(token_digest(token))
        if hit is not None and hit[1] > time.monotonic():
            return hit[0]
        return None

    def verify(self, token: str) -> VerifiedKey:
        """Blocking: may query the database (call from a worker thread)."""
        hit = self.cached(token)
        if hit is not None:
            return hit
        key = verify_key(registry=self.registry, token=token)
        now = time.monotonic()
        with self._lock:
            if len(self._cache) >= _MAX_CACHED_KEYS:
                self._cache.clear()
            self._cache[token_digest(token)] = (key, now + self.cache_s)
            touch = now - self._touched.get(key.pk, -_TOUCH_EVERY_S) >= _TOUCH_EVERY_S
            if touch:
                self._touched[key.pk] = now
        if touch:
            try:
                touch_key(registry=self.registry, key_pk=key.pk, clock=self.clock)
            except Exception:  # a busy database must not fail the request for a usage hint
                log.warning("could not record the use of API key %s", key.key_id, exc_info=True)
        return key

    def forget_all(self) -> None:
        with self._lock:
            self._cache.clear()


async def authenticate(request: Request, *, allow_session: bool = False) -> VerifiedKey:
    """The caller's key (also stored in `request.state.api_key`), or AuthError (401). With
    `allow_session` (dashboard pages), a request without a key header may present the
    dashboard's session cookie instead; its id is kept in `request.state.dashboard_session`."""
    existing = getattr(request.state, "api_key", None)
    if existing is not None:
        return existing
    token = bearer_token(request)
    if not token and allow_session and request.cookies.get(SESSION_COOKIE):
        state = request.app.state
        session_id = request.cookies[SESSION_COOKIE]
        record = await run_in_threadpool(lambda: session_key(registry=state.registry, settings=state.settings,
                                                             session_id=session_id, clock=state.clock))
        request.state.api_key = record.key
        request.state.dashboard_session = session_id
        return record.key
    if not token:
        raise AuthError("missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
    verifier: KeyVerifier = request.app.state.key_verifier
    key = verifier.cached(token) or await run_in_threadpool(verifier.verify, token)
    request.state.api_key = key
    return key


PUBLIC_PATHS = frozenset({"/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json", "/favicon.ico",
                          "/dashboard/login"})
# Static files anyone may fetch: the API docs' and the dashboard's own scripts, styles and fonts.
PUBLIC_PREFIXES = ("/docs/assets/", "/dashboard/static/")
COOKIE_PATH_PREFIX = "/dashboard"  # the only pages that accept the dashboard's session cookie


class ApiKeyMiddleware:
    """Deny by default: every path but /health, the API docs and the dashboard's login needs a
    valid key, checked before the body is read or parsed (an anonymous caller gets 401, not a
    JSON parse error, and cannot make the server parse a large body). Routes added later by
    other packages are covered without doing anything. Roles are checked by the routes."""

    def __init__(self, app, *, public_paths: frozenset[str] = PUBLIC_PATHS,
                 public_prefixes: tuple[str, ...] = PUBLIC_PREFIXES):
        self.app = app
        self.public_paths = public_paths
        self.public_prefixes = public_prefixes

    async def __call__(self, scope, receive, send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in self.public_paths or scope.get("method") == "OPTIONS" \
                or (path.startswith(self.public_prefixes) and ".." not in path):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        dashboard = path == COOKIE_PATH_PREFIX or path.startswith(COOKIE_PATH_PREFIX + "/")
        try:
            await authenticate(request, allow_session=dashboard)
        except AuthError as exc:
            if dashboard:  # people, not programs: send them to the sign-in form (and forget the cookie)
                response = RedirectResponse(f"{COOKIE_PATH_PREFIX}/login", status_code=303,
                                            headers={"Cache-Control": "no-store"})
                if request.cookies.get(SESSION_COOKIE):
                    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH_PREFIX)
                await response(scope, receive, send)
                return
            response = JSONResponse({"detail": exc.message}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def check_role(key: VerifiedKey, roles: tuple[str, ...]) -> None:
    if key.role not in roles:
        wanted = " or ".join(roles)
        raise ForbiddenError(f"this endpoint needs an {wanted} key; this is a {key.role} key")
