"""Signing in to the dashboard against a real server (SQLite and PostgreSQL): a server-side
session whose id (never the key) is in the cookie and whose hash is in the database, revoked on
logout, ended by the key's revocation and by the idle timeout; CSRF and Origin checks on forms;
no caching; the roles' landing pages; and /docs and /redoc without any CDN."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa

from aivo.clock import FrozenClock
from aivo.errors import AuthError
from aivo.registry.api_keys import create_api_key, revoke_api_key
from aivo.registry.dashboard_sessions import resolve_dashboard_session
from aivo.registry.tables import DashboardSession
from aivo.services.dashboard_sessions import csrf_token

HTML = {"accept": "text/html"}


def login(client: httpx.Client, token: str) -> httpx.Response:
    form = client.get("/dashboard/login")
    assert form.status_code == 200 and form.headers["cache-control"] == "no-store"
    login_token = re.search(r'name="login_token" value="([^"]+)"', form.text).group(1)
    return client.post("/dashboard/login", data={"key": token, "login_token": login_token})


def browser(api) -> httpx.Client:
    return httpx.Client(base_url=api.base, headers=HTML, timeout=60)


def _csrf(page: str) -> str:
    return re.search(r'name="csrf_token" value="([0-9a-f]{64})"', page).group(1)


def test_the_cookie_holds_an_opaque_session_id_whose_hash_is_stored(api):
    with browser(api) as c:
        r = login(c, api.tokens["admin"])
        assert r.status_code == 303 and r.headers["location"] == "/dashboard"
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/dashboard" in cookie
        session_id = c.cookies["aivo_session"]
        assert api.tokens["admin"] not in r.headers["set-cookie"] and not session_id.startswith("aivo_")
        page = c.get("/dashboard")
        assert page.status_code == 200 and "Overview" in page.text
        assert page.headers["cache-control"] == "no-store"
        assert "script-src" not in page.headers["content-security-policy"]  # default-src 'none': no script at all
        assert page.headers["x-frame-options"] == "DENY"
        assert c.get("/v1/models").status_code == 401  # the dashboard's cookie opens no API endpoint
    with api.registry.engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT session_sha256, expires_at, created_at, revoked_at "
                                      "FROM dashboard_sessions")).all()
    digests = {row[0] for row in stored}
    assert hashlib.sha256(session_id.encode()).hexdigest() in digests and session_id not in digests


def test_logout_revokes_the_session_in_the_database(api):
    with browser(api) as c:
        login(c, api.tokens["admin"])
        session_id = c.cookies["aivo_session"]
        page = c.get("/dashboard").text
        out = c.post("/dashboard/logout", data={"csrf_token": _csrf(page)})
        assert out.status_code == 303 and out.headers["location"].startswith("/dashboard/login")
        assert c.get("/dashboard").status_code == 303  # the cookie is gone ...
    with browser(api) as replay:  # ... and a copy of it kept elsewhere opens nothing any more
        replay.cookies.set("aivo_session", session_id, path="/dashboard")
        again = replay.get("/dashboard")
        assert again.status_code == 303 and again.headers["location"] == "/dashboard/login"
    with api.registry.engine.connect() as conn:
        revoked = conn.execute(sa.text("SELECT revoked_at FROM dashboard_sessions WHERE session_sha256 = :h"),
                               {"h": hashlib.sha256(session_id.encode()).hexdigest()}).scalar()
        actions = [a for (a,) in conn.execute(sa.text("SELECT action FROM audit_log WHERE action LIKE 'dashboard.%'"))]
    assert revoked is not None and {"dashboard.login", "dashboard.logout"} <= set(actions)


def test_forms_need_the_csrf_token_and_a_same_origin(api):
    with browser(api) as c:
        login(c, api.tokens["admin"])
        page = c.get("/dashboard").text
        forged = c.post("/dashboard/logout", data={})
        assert forged.status_code == 403 and "did not come from this dashboard" in forged.text
        wrong = c.post("/dashboard/logout", data={"csrf_token": "0" * 64})
        assert wrong.status_code == 403
        cross = c.post("/dashboard/logout", data={"csrf_token": _csrf(page)}, headers={"origin": "https://evil.example"})
        assert cross.status_code == 403 and "another site" in cross.text
        assert c.get("/dashboard").status_code == 200  # none of them signed the person out
        assert _csrf(page) == csrf_token(api.settings.resolved_secret_key(), c.cookies["aivo_session"])


def test_sign_in_refuses_a_form_from_elsewhere_and_speaks_plainly(api):
    with browser(api) as c:
        no_token = c.post("/dashboard/login", data={"key": api.tokens["admin"]})
        assert no_token.status_code == 403 and "aivo_session" not in c.cookies
        bad = login(c, "not-a-key")
        assert bad.status_code == 401
        assert "That access key was not accepted" in bad.text and "endpoint" not in bad.text
        assert "API key" not in bad.text  # teachers' words: "access key"


@pytest.mark.parametrize("role, landing", [("admin", "/dashboard"), ("service", "/dashboard"),
                                           ("teacher", "/dashboard/learners")])
def test_each_role_lands_on_its_page(api, role, landing):
    with browser(api) as c:
        r = login(c, api.tokens[role])
        assert r.status_code == 303 and r.headers["location"] == landing
        assert c.get(landing).status_code == 200
        if role == "teacher":
            overview = c.get("/dashboard")
            assert overview.status_code == 303 and overview.headers["location"] == "/dashboard/learners"
            refused = c.get("/dashboard/models")
            assert refused.status_code == 403 and "text/html" in refused.headers["content-type"]
            assert "Not available to you" in refused.text


def test_a_revoked_key_ends_its_sessions_and_idle_sessions_expire(api):
    with api.registry.session() as session:
        created = create_api_key(session=session, role="admin", tenant="school-a", actor="tests")
    with browser(api) as c:
        login(c, created.token)
        session_id = c.cookies["aivo_session"]
        assert c.get("/dashboard").status_code == 200
        with api.registry.session() as session:
            revoke_api_key(session=session, key_id=created.key.key_id, actor="tests")
        assert c.get("/dashboard").status_code == 303
    with api.registry.session() as session, pytest.raises(AuthError):
        resolve_dashboard_session(session=session, session_id=session_id, idle=timedelta(hours=1))
    with browser(api) as c:  # the idle timeout and the absolute expiry, with the clock moved on
        login(c, api.tokens["admin"])
        session_id = c.cookies["aivo_session"]
    with api.registry.session() as session:
        assert resolve_dashboard_session(session=session, session_id=session_id, idle=timedelta(hours=1))
        later = FrozenClock(session.scalar(sa.select(DashboardSession.expires_at).where(
            DashboardSession.session_sha256 == hashlib.sha256(session_id.encode()).hexdigest())))
    for clock, idle in ((FrozenClock(later.now() - timedelta(hours=7)), timedelta(minutes=30)),
                        (later, timedelta(days=30))):
        with api.registry.session() as session, pytest.raises(AuthError):
            resolve_dashboard_session(session=session, session_id=session_id, idle=idle, clock=clock)


def test_empty_pages_say_what_to_do_next(api):
    """This registry has a version but no round, drift check or job yet."""
    with api.client("admin") as c:
        expected = {"/dashboard/rounds": "aivo aggregate", "/dashboard/drift": "aivo drift check",
                    "/dashboard/runs": "POST /trainer/jobs", "/dashboard/audit": "main.promote"}
        for path, hint in expected.items():
            page = c.get(path, headers=HTML)
            assert page.status_code == 200 and hint in page.text, path
        assert c.get("/dashboard/rounds", params={"range": "1y"}, headers=HTML).status_code == 422
        assert c.get("/dashboard/models/no-such-version", headers=HTML).status_code == 404


def test_programs_may_still_send_their_key_in_a_header(api):
    with api.client("service") as c:
        page = c.get("/dashboard", headers=HTML)
    assert page.status_code == 200 and "<svg" in page.text


def test_every_page_answers_on_this_backend(api):
    learner = api.pseudonym("L003")
    with api.client("admin") as c:
        for path in ("/dashboard", "/dashboard/models", "/dashboard/models/aivo-main-v1", "/dashboard/runs",
                     "/dashboard/rounds", "/dashboard/drift", "/dashboard/learners", f"/dashboard/learners/{learner}",
                     "/dashboard/audit", "/dashboard/alerts", "/dashboard/models/rollback",
                     "/dashboard/models/aivo-main-v1/promote", f"/dashboard/learners/{learner}/erase",
                     "/dashboard?range=7d"):
            page = c.get(path, headers=HTML)
            assert page.status_code == 200, (path, page.text[:300])
            assert page.headers["cache-control"] == "no-store"


def test_docs_and_redoc_load_nothing_from_elsewhere(api):
    for path in ("/docs", "/redoc"):
        page = httpx.get(api.base + path)
        assert page.status_code == 200
        urls = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert urls and all(u.startswith("/") for u in urls), urls
        assert "cdn" not in page.text.lower() and "fonts.googleapis" not in page.text
        for url in urls:
            asset = httpx.get(api.base + url)
            assert asset.status_code == 200 and len(asset.content) > 500, url
    assert '"validatorUrl": null' in httpx.get(api.base + "/docs").text
