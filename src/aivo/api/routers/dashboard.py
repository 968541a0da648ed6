"""GET /dashboard: a server-rendered page with inline SVG charts (no JavaScript, no CDN).

People log in with an admin or service key through the form at /dashboard/login; the key is
kept in an HttpOnly, SameSite=Strict cookie limited to /dashboard (the JSON API never reads
that cookie, so it cannot be used for cross-site requests against the API). Programs may send
the key in a header instead.
"""

from __future__ import annotations

import html
import logging
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse

from aivo.api import plots
from aivo.api.auth import KEY_COOKIE, check_role
from aivo.api.deps import ClockDep, CurrentKey, RegistryDep, ServiceKey
from aivo.errors import AivoError
from aivo.registry import MainVersionRecord
from aivo.services.dashboard import DashboardData, dashboard_data

log = logging.getLogger(__name__)
router = APIRouter(tags=["dashboard"])
_MAX_FORM_BYTES = 4096

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f5f6f8;color:#1d2330}
header{background:#1d2330;color:#fff;padding:.8rem 1.5rem;display:flex;justify-content:space-between;align-items:center}
header h1{font-size:1.2rem;margin:0} header form{margin:0}
main{padding:1rem 1.5rem;display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:1rem}
section{background:#fff;border-radius:8px;padding:.8rem 1rem;box-shadow:0 1px 2px rgba(0,0,0,.08)}
h2{font-size:1rem;margin:.2rem 0 .6rem} table{border-collapse:collapse;width:100%;font-size:.9rem}
td,th{padding:.25rem .4rem;border-bottom:1px solid #e5e7eb;text-align:left} td.n{text-align:right}
svg{width:100%;height:auto} .empty{color:#6b7280;font-style:italic} .warn{color:#b53f3f}
.login{max-width:420px;margin:4rem auto;background:#fff;padding:1.5rem;border-radius:8px}
input[type=password]{width:100%;padding:.5rem;margin:.5rem 0 1rem;box-sizing:border-box}
button{padding:.45rem 1rem;border:0;border-radius:4px;background:#2f6db5;color:#fff;cursor:pointer}
"""


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<meta name=viewport content='width=device-width,initial-scale=1'><style>{_STYLE}</style></head>"
            f"<body>{body}</body></html>")


def _login_form(error: str = "") -> str:
    message = f'<p class="warn">{html.escape(error)}</p>' if error else ""
    return _page("AIVO dashboard: log in", (
        '<div class="login"><h1>AIVO dashboard</h1>'
        '<p>Log in with an admin or service API key (<code>aivo apikey create --role admin ...</code>); '
        'counsellor and teacher keys open the safety alerts page.</p>'
        f'{message}<form method="post" action="/dashboard/login">'
        '<label for="key">API key</label><input id="key" name="key" type="password" autocomplete="off" required>'
        '<button type="submit">Log in</button></form></div>'))


@router.get("/dashboard/login", response_class=HTMLResponse, include_in_schema=False)
def login_form() -> HTMLResponse:
    return HTMLResponse(_login_form())


@router.post("/dashboard/login", include_in_schema=False)
async def login(request: Request):
    body = await request.body()
    token = (parse_qs(body[:_MAX_FORM_BYTES].decode("utf-8", "replace")).get("key") or [""])[0].strip()
    verifier = request.app.state.key_verifier
    try:
        key = await run_in_threadpool(verifier.verify, token)
        check_role(key, ("admin", "service", "counsellor", "teacher"))
    except AivoError as exc:
        return HTMLResponse(_login_form(exc.message), status_code=exc.http_status)
    # Counsellors and teachers see the safety alerts page; the operator dashboard is admin/service.
    target = "/dashboard" if key.role in ("admin", "service") else "/dashboard/alerts"
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(KEY_COOKIE, token, httponly=True, samesite="strict", path="/dashboard",
                        secure=request.url.scheme == "https", max_age=8 * 3600)
    return response


@router.post("/dashboard/logout", include_in_schema=False)
def logout() -> RedirectResponse:
    response = RedirectResponse("/dashboard/login", status_code=303)
    response.delete_cookie(KEY_COOKIE, path="/dashboard")
    return response


def version_auc(record: MainVersionRecord) -> float | None:
    """The test AUC a version was registered with (pipeline, CLI or federated layouts)."""
    metrics = record.training_metrics or {}
    for path in (("test", "metrics", "auc"), ("test", "auc"), ("auc",), ("metrics_after", "auc")):
        value = metrics
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, (int, float)):
            return float(value)
    return None


def _stats_table(data: DashboardData) -> str:
    s = data.stats
    rows = [("active Main Brain", s.active_main_version or "none"), ("Main Brain versions", s.total_main_versions),
            ("learners", s.total_learners), ("learner models (active)",
                                             f"{s.total_learner_models} ({s.active_learner_models})"),
            ("training sessions (not yet aggregated)", f"{s.total_training_sessions} ({s.pending_training_sessions})"),
            ("federated rounds", s.total_federated_updates),
            ("mean performance of active learner models",
             "n/a" if s.average_performance is None else f"{s.average_performance:.4f}")]
    cells = "".join(f"<tr><th>{html.escape(str(k))}</th><td class=n>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f"<table>{cells}</table>"


def _version_panel(data: DashboardData) -> str:
    points = [(v.created_at, version_auc(v), v) for v in data.versions]
    points = [p for p in points if p[1] is not None]
    notes = [f"{v.version}{' (active)' if v.status == 'active' else ''}" for _, _, v in points]
    return plots.line_chart(series={"test AUC": ([p[0] for p in points], [p[1] for p in points])},
                            annotate={"test AUC": notes}, ylabel="test AUC",
                            empty="no Main Brain version with a test AUC yet")


def _federated_panel(data: DashboardData) -> str:
    before = [(u.created_at, u.metrics_before.get("auc")) for u in data.federated]
    after = [(u.created_at, u.metrics_after.get("auc")) for u in data.federated]
    series = {"AUC before": ([t for t, a in before if a is not None], [a for _, a in before if a is not None]),
              "AUC after": ([t for t, a in after if a is not None], [a for _, a in after if a is not None])}
    return plots.line_chart(series=series, ylabel="AUC", empty="no federated round yet")


def _privacy_panel(data: DashboardData, budget: float) -> str:
    rounds = [(u.created_at, u.privacy.get("epsilon")) for u in data.federated
              if isinstance(u.privacy.get("epsilon"), (int, float))]
    parts = [plots.line_chart(series={"epsilon after round": ([t for t, _ in rounds], [e for _, e in rounds])},
                              ylabel="user-level epsilon", hline=(budget, f"budget {budget:g}"),
                              empty="no private federated round yet")]
    if data.ledger_epsilons is not None:
        parts.append(plots.histogram(values=data.ledger_epsilons, xlabel="epsilon spent per learner",
                                     vline=(budget, f"budget {budget:g}"), empty="no learner has spent privacy yet"))
    if data.non_private_learners:
        parts.append(f'<p class="warn">{data.non_private_learners} learner(s) took part in a round without '
                     "differential privacy: no privacy guarantee holds for them.</p>")
    return "".join(parts)


def _drift_panel(data: DashboardData, threshold: float) -> str:
    points = [(r.computed_at, r.score) for r in data.drift if r.score is not None]
    chart = plots.line_chart(series={"drift score": ([t for t, _ in points], [v for _, v in points])},
                             ylabel="drift score", hline=(threshold, f"threshold {threshold:g}"),
                             empty="no drift check has run yet")
    latest = data.drift[-1] if data.drift else None
    if latest is None:
        return chart
    signals = ", ".join(f"{html.escape(str(k))} {v:.3f}" for k, v in sorted(latest.signals.items())
                        if isinstance(v, (int, float)))
    verdict = '<span class="warn">drifted: retraining scheduled</span>' if latest.drifted else "within threshold"
    return chart + f"<p>Latest ({html.escape(latest.version or '')}): {verdict}. {signals}</p>"


def render_dashboard(request: Request) -> str:
    state = request.app.state
    data = dashboard_data(registry=state.registry, clock=state.clock)
    sessions = plots.bar_chart(labels=[d.isoformat() for d, _ in data.sessions_per_day],
                               values=[n for _, n in data.sessions_per_day], ylabel="sessions per day",
                               empty="no local training session in the last 60 days")
    panels = [("Registry", _stats_table(data)), ("Main Brain versions: test AUC over time", _version_panel(data)),
              ("Local training sessions", sessions), ("Federated rounds: AUC before and after", _federated_panel(data)),
              ("Privacy spent (user level)", _privacy_panel(data, state.settings.epsilon_budget)),
              ("Main Brain drift", _drift_panel(data, state.settings.drift_threshold))]
    for panel in state.hooks.dashboard_panels:
        try:
            panels.append(panel())
        except Exception as exc:
            log.exception("dashboard panel %r failed", panel)
            panels.append(("panel error", plots.empty_note(f"{type(exc).__name__}: {exc}")))
    sections = "".join(f"<section><h2>{html.escape(title)}</h2>{content}</section>" for title, content in panels)
    stamp = data.generated_at.strftime("%Y-%m-%d %H:%M UTC") if data.generated_at else ""
    header = (f"<header><h1>AIVO dashboard <small>{html.escape(stamp)}</small></h1>"
              '<form method="post" action="/dashboard/logout"><button type="submit">Log out</button></form></header>')
    return _page("AIVO dashboard", header + f"<main>{sections}</main>")


@router.get("/dashboard", response_class=HTMLResponse, summary="Operator dashboard (HTML)")
def dashboard(request: Request, key: ServiceKey) -> HTMLResponse:
    """Model versions and their AUC, local training, federated rounds, privacy spent, and the
    panels other packages add (drift scores). Admin or service keys."""
    return HTMLResponse(render_dashboard(request))


@router.get("/dashboard/alerts", response_class=HTMLResponse, summary="Tutor safety alerts (HTML)")
def alerts_page(registry: RegistryDep, key: CurrentKey, clock: ClockDep) -> HTMLResponse:
    """Open safety alerts of the school (admin, counsellor; a teacher sees its class list's).
    A minimal listing: acknowledge with POST /v1/tutor/alerts/{id}/acknowledge."""
    from aivo.services.tutor_alerts import alerts_for_key

    alerts = alerts_for_key(registry=registry, key=key, clock=clock)
    rows = "".join(
        f"<tr><td class=n>{a.id}</td><td>{a.created_at:%Y-%m-%d %H:%M} UTC</td><td>{html.escape(a.category)}</td>"
        f"<td><code>{html.escape((a.learner_id or 'unknown')[:12])}</code></td><td>{html.escape(a.excerpt)}</td></tr>"
        for a in alerts)
    table = ("<table><tr><th>id</th><th>when</th><th>category</th><th>learner</th><th>excerpt</th></tr>"
             f"{rows}</table>" if alerts else '<p class="empty">No open safety alerts.</p>')
    header = ("<header><h1>AIVO: tutor safety alerts</h1>"
              '<form method="post" action="/dashboard/logout"><button type="submit">Log out</button></form></header>')
    body = (f"<main><section><h2>Open alerts ({len(alerts)})</h2>{table}<p>A self-harm message to the tutor "
            "raises an alert. Reach out to the learner; then acknowledge the alert "
            "(<code>POST /v1/tutor/alerts/{id}/acknowledge</code>).</p></section></main>")
    return HTMLResponse(_page("AIVO safety alerts", header + body))
