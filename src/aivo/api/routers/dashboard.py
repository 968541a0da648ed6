"""The operator's console at /dashboard: signing in and out, the overview, the safety alerts and
the audit log. The registry, runs, rounds, drift and learner pages have their own routers
(dashboard_models, dashboard_runs, dashboard_learners); shared parts are in aivo.api.dashboard_ui.

Signing in: a person enters an access key once; the server checks it and opens a server-side
session (aivo.services.dashboard_sessions). The browser keeps only an opaque session id in an
HttpOnly, SameSite=Strict cookie limited to /dashboard; the database keeps its hash, with an
expiry. Signing out revokes it. Forms that change something carry a CSRF token. Programs may
still send their key in a header.
"""

from __future__ import annotations

import logging
from typing import Annotated, Literal
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from aivo.api import dashboard_charts as charts
from aivo.api.auth import SESSION_COOKIE
from aivo.api.dashboard_ui import (MAX_FORM_BYTES, SECURITY_HEADERS, STATIC, FormDep, clear_session_cookie,
                                   landing_page, render)
from aivo.api.deps import AdminKey, ClockDep, CurrentKey, RegistryDep, SettingsDep, require_roles, VerifiedKey
from aivo.errors import AivoError
from aivo.services.dashboard import audit_entries, overview, time_range
from aivo.services.dashboard_sessions import (check_token, login_csrf_token, login_nonce, sign_in, sign_out)
from aivo.services.tutor_alerts import alerts_for_key

log = logging.getLogger(__name__)
router = APIRouter(tags=["dashboard"])
LOGIN_COOKIE = "aivo_login"  # the sign-in form's nonce (10 minutes), for its CSRF token
AlertReaderKey = Annotated[VerifiedKey, Depends(require_roles("admin", "counsellor", "teacher"))]
RangeQuery = Annotated[Literal["24h", "7d", "30d", "90d", "all"], Query(description="Time range of the charts.")]


def _login_page(request: Request, *, error: str = "", status_code: int = 200) -> Response:
    nonce = login_nonce()
    response = render(request, "login.html", key=None, status_code=status_code, error=error,
                      login_token=login_csrf_token(request.app.state.secret_key, nonce))
    response.set_cookie(LOGIN_COOKIE, nonce, max_age=600, httponly=True, samesite="strict", path="/dashboard",
                        secure=request.url.scheme == "https")
    return response


@router.get("/dashboard/login", include_in_schema=False)
def login_form(request: Request) -> Response:
    return _login_page(request)


@router.post("/dashboard/login", include_in_schema=False)
async def login(request: Request) -> Response:
    state = request.app.state
    body = (await request.body())[:MAX_FORM_BYTES]
    fields = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    try:
        check_token(login_csrf_token(state.secret_key, nonce), fields.get("login_token") if nonce else None)
        opened = await run_in_threadpool(lambda: sign_in(registry=state.registry, settings=state.settings,
                                                         token=fields.get("key", ""), clock=state.clock))
    except AivoError as exc:
        return _login_page(request, error=exc.message, status_code=exc.http_status)
    response = RedirectResponse(landing_page(opened.key.role), status_code=303, headers=SECURITY_HEADERS)
    response.set_cookie(SESSION_COOKIE, opened.session_id, max_age=opened.max_age_s, httponly=True,
                        samesite="strict", path="/dashboard", secure=request.url.scheme == "https")
    response.delete_cookie(LOGIN_COOKIE, path="/dashboard")
    return response


@router.post("/dashboard/logout", include_in_schema=False)
def logout(request: Request, registry: RegistryDep, clock: ClockDep, key: CurrentKey, form: FormDep) -> Response:
    """Revokes the session in the database (the cookie alone opens nothing any more)."""
    session_id = getattr(request.state, "dashboard_session", None)
    if session_id:
        sign_out(registry=registry, session_id=session_id, key=key, clock=clock)
    response = RedirectResponse("/dashboard/login?notice=signed-out", status_code=303, headers=SECURITY_HEADERS)
    clear_session_cookie(response)
    return response


@router.get("/dashboard/static/{name}", include_in_schema=False)
def static_file(name: Annotated[str, Path(pattern=r"^[a-z0-9_-]+\.(css|svg|png)$")]) -> Response:
    path = STATIC / name
    if path.parent != STATIC or not path.is_file():
        return Response("not found", status_code=404, media_type="text/plain")
    return FileResponse(path, headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"})


@router.get("/dashboard", summary="Operator dashboard (HTML)", response_class=HTMLResponse,
            responses={303: {"description": "A teacher or counsellor key: to its own page."}})
def dashboard(request: Request, registry: RegistryDep, settings: SettingsDep, clock: ClockDep, key: CurrentKey,
              range: RangeQuery = "all") -> Response:  # noqa: A002 (the query parameter's name)
    """The overview: registry figures, what is running, versions, rounds, privacy and drift at a
    glance. Admin and service keys; a teacher key is sent to its class's learners and a
    counsellor key to the safety alerts. Browsers sign in at /dashboard/login."""
    if key.role not in ("admin", "service"):
        return RedirectResponse(landing_page(key.role), status_code=303, headers=SECURITY_HEADERS)
    window = time_range(range, clock=clock)
    data = overview(registry=registry, settings=settings, key=key, window=window, clock=clock)
    panels = []
    for panel in request.app.state.hooks.dashboard_panels:  # other packages' panels (title, HTML)
        try:
            panels.append(panel())
        except Exception as exc:
            log.exception("dashboard panel %r failed", panel)
            panels.append(("panel error", f'<p class="bad">{type(exc).__name__}: the panel could not be drawn '
                                          "(logged on the server)</p>"))
    return render(request, "overview.html", key=key, refresh=data.jobs.open > 0, data=data, window=window,
                  budget=settings.epsilon_budget, drift_threshold=settings.drift_threshold, panels=panels,
                  versions_chart=charts.versions_chart(data.versions, window),
                  rounds_chart=charts.rounds_auc_chart(data.rounds, window),
                  epsilon_chart=charts.epsilon_chart(data.rounds, settings.epsilon_budget, window),
                  drift_chart=charts.drift_chart(data.drift, window, settings.drift_threshold),
                  sessions_chart=charts.sessions_chart(data.sessions_per_day, window))


@router.get("/dashboard/alerts", summary="Tutor safety alerts (HTML)", response_class=HTMLResponse)
def alerts_page(request: Request, registry: RegistryDep, key: AlertReaderKey, clock: ClockDep) -> Response:
    """Open safety alerts of the school (admin, counsellor; a teacher sees its class list's).
    Acknowledge with POST /v1/tutor/alerts/{id}/acknowledge."""
    alerts = alerts_for_key(registry=registry, key=key, clock=clock)
    return render(request, "alerts.html", key=key, alerts=alerts, title="Safety alerts")


@router.get("/dashboard/audit", include_in_schema=False)
def audit_page(request: Request, registry: RegistryDep, key: AdminKey,
               action: Annotated[str, Query(max_length=64, pattern=r"^[a-z_.]*$")] = "") -> Response:
    entries = audit_entries(registry=registry, action=action or None)
    return render(request, "audit.html", key=key, entries=entries, action=action, title="Audit log")

