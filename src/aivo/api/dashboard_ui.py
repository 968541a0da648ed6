"""What every dashboard page shares: Jinja2 templates (autoescaped), the page frame (navigation
by role, CSRF token, time range, auto-refresh), the security headers, form parsing with CSRF and
Origin checks, and HTML error pages.

Headers on every dashboard response: `Cache-Control: no-store` (Back after logout shows nothing
from the cache), a Content-Security-Policy that allows only this server's own styles and images
and no script at all, `X-Frame-Options: DENY`, `Referrer-Policy: same-origin`, `nosniff`.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode, urlsplit

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from aivo.api.auth import SESSION_COOKIE
from aivo.api.deps import VerifiedKey
from aivo.errors import DataError, ForbiddenError, PayloadTooLargeError
from aivo.services.dashboard_sessions import check_token, csrf_token

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
MAX_FORM_BYTES = 16 * 1024
REFRESH_S = 5  # pages with something running reload this often (?refresh=off stops it)

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Content-Security-Policy": ("default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
                                "frame-ancestors 'none'; base-uri 'none'"),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

# (path, label, roles): the navigation; a page a role may not open is not shown to it.
NAV = (
    ("/dashboard", "Overview", ("admin", "service")),
    ("/dashboard/models", "Models", ("admin", "service")),
    ("/dashboard/runs", "Runs", ("admin", "service")),
    ("/dashboard/rounds", "Rounds", ("admin", "service")),
    ("/dashboard/drift", "Drift", ("admin", "service")),
    ("/dashboard/learners", "Learners", ("admin", "service", "teacher")),
    ("/dashboard/alerts", "Safety alerts", ("admin", "counsellor", "teacher")),
    ("/dashboard/audit", "Audit log", ("admin",)),
)
OPERATOR_ROLES = ("admin", "service")
LEARNER_ROLES = ("admin", "service", "teacher")
NOTICES = {  # ?notice=...: fixed texts only (a URL cannot make the page say anything else)
    "promoted": "Promoted. The previous version was archived; the change is in the audit log.",
    "rolled-back": "Rolled back. The change is in the audit log.",
    "cancelled": "Cancellation done: a queued job stops at once, a running one within seconds.",
    "erased": "The learner's data was erased (interactions, models, sessions, privacy ledger, artifacts). "
              "The audit log keeps the counts, not the learner.",
    "signed-out": "You are signed out.",
}


def landing_page(role: str) -> str:
    if role in OPERATOR_ROLES:
        return "/dashboard"
    if role == "teacher":
        return "/dashboard/learners"
    return "/dashboard/alerts"


def when(value: datetime | None, missing: str = "—") -> str:
    if value is None:
        return missing
    value = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%d %H:%M UTC")


def num(value: Any, digits: int = 4, missing: str = "—") -> str:
    if value is None or isinstance(value, bool):
        return missing if value is None else ("yes" if value else "no")
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isinf(value):
            return "unbounded"
        if math.isnan(value):
            return missing
        if value.is_integer() and abs(value) < 1e12:
            return f"{int(value):,}"
        return f"{value:.{digits}f}"
    return str(value)


def duration(seconds: float | None, missing: str = "—") -> str:
    if seconds is None:
        return missing
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def percent(value: float | None, missing: str = "—") -> str:
    return missing if value is None else f"{value:+.2%}"


def short(value: str | None, n: int = 12) -> str:
    if not value:
        return "—"
    return value if len(value) <= n else value[:n] + "…"


_env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html"]),
                   trim_blocks=True, lstrip_blocks=True)
_env.filters.update(when=when, num=num, duration=duration, percent=percent, short=short)


def _query(request: Request, **changes: Any) -> str:
    params = {k: v for k, v in request.query_params.items()}
    params.update({k: v for k, v in changes.items() if v is not None})
    for k in [k for k, v in changes.items() if v is None]:
        params.pop(k, None)
    return urlencode(params)


def page_context(request: Request, key: VerifiedKey) -> dict[str, Any]:
    session_id = getattr(request.state, "dashboard_session", None)
    secret = request.app.state.secret_key
    return {
        "key": key, "is_admin": key.role == "admin",
        "nav": [(path, label) for path, label, roles in NAV if key.role in roles],
        "path": request.url.path,
        "csrf": csrf_token(secret, session_id) if session_id else "",
        "notice": NOTICES.get(request.query_params.get("notice", "")),
        "refresh_off": request.query_params.get("refresh") == "off",
        "query": lambda **changes: _query(request, **changes),
    }


def render(request: Request, template: str, *, key: VerifiedKey | None, status_code: int = 200,
           refresh: bool = False, **context: Any) -> HTMLResponse:
    """A full page. `refresh`: something is running, reload every REFRESH_S seconds (unless
    the person turned it off with ?refresh=off)."""
    values = page_context(request, key) if key is not None else {"key": None, "nav": [], "path": request.url.path,
                                                                   "csrf": "", "notice": None, "refresh_off": True,
                                                                   "query": lambda **c: ""}
    values.update(context)
    values["refresh_s"] = REFRESH_S if refresh and not values["refresh_off"] else None
    values["refreshing"] = refresh
    body = _env.get_template(template).render(**values)
    return HTMLResponse(body, status_code=status_code, headers=SECURITY_HEADERS)


def markup(html: str) -> Markup:
    """An HTML fragment built by aivo.api.plots (which escapes every text it draws)."""
    return Markup(html)


def wants_html(request: Request) -> bool:
    path = request.url.path
    return (path == "/dashboard" or path.startswith("/dashboard/")) and "text/html" in request.headers.get("accept", "")


def error_page(request: Request, status_code: int, message: str) -> HTMLResponse:
    key = getattr(request.state, "api_key", None)
    titles = {400: "That request could not be read", 401: "Please sign in", 403: "Not available to you",
              404: "Not found", 409: "Not possible right now", 413: "Too large", 422: "Please check what you entered"}
    return render(request, "error.html", key=key, status_code=status_code,
                  title=titles.get(status_code, "Something went wrong"), message=message)


async def posted_form(request: Request) -> dict[str, str]:
    """The posted form (urlencoded, at most MAX_FORM_BYTES), after the CSRF and Origin checks.
    Requests that carry an API key header instead of the session cookie skip the CSRF check
    (a browser never adds such a header by itself)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise PayloadTooLargeError(f"the form is larger than {MAX_FORM_BYTES} bytes")
    try:
        fields = {k: v[0] for k, v in parse_qs(bytes(body).decode("utf-8"), keep_blank_values=True).items()}
    except UnicodeDecodeError:
        raise DataError("the form is not valid UTF-8") from None
    check_origin(request)
    session_id = getattr(request.state, "dashboard_session", None)
    if session_id:
        check_token(csrf_token(request.app.state.secret_key, session_id), fields.get("csrf_token"))
    return fields


# A dashboard form's fields, read and checked before a (synchronous) handler runs.
FormDep = Annotated[dict[str, str], Depends(posted_form)]


def check_origin(request: Request) -> None:
    """A browser's cross-site POST names another origin: refuse it (defence in depth besides
    the SameSite=Strict cookie and the CSRF token)."""
    origin = request.headers.get("origin")
    if not origin:
        return
    host = request.headers.get("host", "")
    if urlsplit(origin).netloc != host:
        raise ForbiddenError("this form was sent from another site")


def clear_session_cookie(response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/dashboard")
