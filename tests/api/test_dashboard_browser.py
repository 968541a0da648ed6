"""The dashboard in a real browser: Debian's Chromium driven by Playwright against a real
`aivo serve` process and its SQLite registry, filled by the real services (tests/api/dashboard_seed.py).

Checked as a person would: sign in, every page at 390 px and 1400 px with no horizontal
overflow and no console error, each chart drawn from the fields the services wrote (the hover
titles carry the stored values), each action with its confirmation and its result (promote,
roll back, cancel a running job, export, erase), a teacher's class-only view, and a sign-out
that really ends the session (Back shows nothing from the cache).

Screenshots are kept in test-artifacts/dashboard/ (or $AIVO_TEST_ARTIFACTS).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import sqlalchemy as sa

from aivo.api.plots import format_value
from aivo.registry.tables import AuditEntry, DriftReport, FederatedUpdate, Learner, MainModelVersion, PipelineRun
from aivo.registry.tables import PrivacyLedgerEntry, TrainingSession
from aivo.services.jobs import make_worker, submit_job
from tests.api.conftest import free_port
from tests.api.dashboard_seed import LAX, SECRET, SHEET, Seeded, seed
from tests.brain.helpers import TINY

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(os.environ.get("AIVO_TEST_ARTIFACTS") or Path(__file__).resolve().parents[2] / "test-artifacts") \
    / "dashboard"
WIDTHS = (390, 1400)

pytestmark = pytest.mark.timeout(600)


class Console:
    """The server, the seeded registry and one browser page (with its console errors)."""

    def __init__(self, base: str, seeded: Seeded, context):
        self.base, self.seeded, self.context = base, seeded, context
        self.page = context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def go(self, path: str) -> None:
        response = self.page.goto(self.base + path)
        assert response is not None and response.status == 200, (path, response and response.status)

    def sign_in(self, who: str) -> None:
        self.page.goto(self.base + "/dashboard/login")
        self.page.fill("#key", self.seeded.tokens[who])
        self.page.click("button[type=submit]")
        self.page.wait_for_load_state()

    def sign_out(self) -> None:
        self.page.click("header.top form button")
        self.page.wait_for_url("**/dashboard/login**")

    def titles(self) -> list[str]:
        """The hover titles of the page's charts."""
        return self.page.eval_on_selector_all("figure.chart svg title", "els => els.map(e => e.textContent)")

    def shoot(self, name: str) -> None:
        """A full-page screenshot at each width, checking that nothing is wider than the window."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for width in WIDTHS:
            self.page.set_viewport_size({"width": width, "height": 900})
            overflow = self.page.evaluate("""() => ({page: document.documentElement.scrollWidth - window.innerWidth,
                cards: [...document.querySelectorAll('section.card, .tile')]
                    .filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.querySelector('h2')?.textContent
                    || e.textContent.slice(0, 40))})""")
            assert overflow["page"] <= 0 and not overflow["cards"], (name, width, overflow)
            self.page.screenshot(path=str(ARTIFACTS / f"{name}-{width}.png"), full_page=True)
        self.page.set_viewport_size({"width": 1400, "height": 900})

    def check_console(self, *expected_statuses: int) -> None:
        """No console error, but Chromium's own note about a page answered with one of
        `expected_statuses` on purpose (a refused sign-in is 401, a refused page 403)."""
        errors, self.errors[:] = list(self.errors), []
        allowed = [f"status of {code} " for code in expected_statuses]
        unexpected = [e for e in errors if not (e.startswith("Failed to load resource") and any(a in e for a in allowed))]
        assert not unexpected, unexpected


def _start_server(home: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "AIVO_HOME": str(home), "AIVO_SECRET_KEY": SECRET, "AIVO_SCHEDULER_ENABLED": "false",
           "AIVO_RECOMMENDER_PROCESSES": "0", "AIVO_NUM_THREADS": "1", "AIVO_API_KEY_CACHE_S": "0",
           "AIVO_LOG_LEVEL": "WARNING"}
    env.pop("AIVO_DATABASE_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "aivo", "serve", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"aivo serve exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(base + "/health", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError("aivo serve did not answer /health within 120 s")


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    home = tmp_path_factory.mktemp("dashboard") / "home"
    seeded = seed(home)
    proc, base = _start_server(home)
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, headless=True,
                args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 900}, accept_downloads=True)
            try:
                yield Console(base, seeded, context)
            finally:
                context.close()
    finally:
        proc.terminate()
        proc.wait(20)


def _db(console: Console):
    return console.seeded.registry.session(read_only=True)


def test_sign_in_page_speaks_to_people(console):
    console.go("/dashboard/login")
    text = console.page.inner_text("body")
    assert "access key your school's AIVO administrator gave you" in text
    assert "endpoint" not in text and "API key" not in text
    console.shoot("sign-in")
    console.page.fill("#key", "aivo_000000000000_" + "x" * 43)
    console.page.click("button[type=submit]")
    assert "That access key was not accepted" in console.page.inner_text("[role=alert]")
    console.check_console(401)


PAGES = [  # (name, path, text the page must show)
    ("overview", "/dashboard", "Active Main Brain"),
    ("models", "/dashboard/models", "aivo-main-v2"),
    ("version", "/dashboard/models/aivo-main-v1", "Learning curve"),
    ("compare", "/dashboard/models/compare?a=aivo-main-v1&b=aivo-main-v2", "Test AUC per subgroup"),
    ("runs", "/dashboard/runs", "round skipped"),
    ("rounds", "/dashboard/rounds", "ε spent per learner"),
    ("drift", "/dashboard/drift", "retraining not scheduled"),
    ("learners", "/dashboard/learners", "Find a learner"),
    ("audit", "/dashboard/audit", "main.promote"),
    ("alerts", "/dashboard/alerts", "No open safety alerts"),
]


def test_every_page_renders_the_registry_at_phone_and_desk_widths(console):
    console.sign_in("admin")
    assert console.page.url.endswith("/dashboard")
    seeded = console.seeded
    pages = PAGES + [("job-pipeline", f"/dashboard/runs/jobs/{seeded.pipeline_job}", "Decision"),
                     ("job-skipped", f"/dashboard/runs/jobs/{seeded.skipped_job}", "round skipped"),
                     ("round", f"/dashboard/rounds/{seeded.round_id}", "The gate's decision"),
                     ("learner", f"/dashboard/learners/{seeded.pseudonym('L003')}", "Mastery per skill over time")]
    for name, path, text in pages:
        console.go(path)
        assert text in console.page.inner_text("main"), name
        console.shoot(name)
    console.check_console()


def test_charts_draw_what_the_services_wrote(console):
    seeded = console.seeded
    with _db(console) as s:  # plain copies of the rows (the session closes)
        versions = {v.version: SimpleNamespace(training_metrics=v.training_metrics)
                    for v in s.scalars(sa.select(MainModelVersion))}
        rounds = [SimpleNamespace(id=r.id, status=r.status, metrics_before=r.metrics_before,
                                  metrics_after=r.metrics_after, details=r.details, privacy=r.privacy)
                  for r in s.scalars(sa.select(FederatedUpdate))]
        drift = [SimpleNamespace(score=r.score, drifted=r.drifted, action=r.action, signals=r.signals)
                 for r in s.scalars(sa.select(DriftReport).order_by(DriftReport.id))]
        ledger = [e for (e,) in s.execute(sa.select(PrivacyLedgerEntry.epsilon)) if e is not None]
        sessions = s.scalar(sa.select(sa.func.count()).select_from(TrainingSession))
        run = SimpleNamespace(training=s.scalar(sa.select(PipelineRun.training)
                                                .where(PipelineRun.job_id == seeded.pipeline_job)))
    # Versions: the stored test AUC of each version, the never-promoted candidate off the line.
    console.go("/dashboard/models")
    titles = console.titles()
    for name, row in versions.items():
        auc = row.training_metrics["test"]["metrics"]["auc"]
        assert any(t.startswith(("promoted versions", "candidates not promoted")) and format_value(auc) in t
                   and name in t for t in titles), (name, titles)
    assert any(t.startswith("candidates not promoted") and "aivo-main-v2, never promoted" in t for t in titles)
    # Rounds: AUC before and after as recorded, a rejected candidate with the gate's words; epsilon
    # from the fields the aggregation service writes (epsilon_one_round, epsilon_after_round_max).
    console.go("/dashboard/rounds")
    titles = console.titles()
    record = next(r for r in rounds if r.details.get("mode") != "sites")
    across = next(r for r in rounds if r.details.get("mode") == "sites")
    assert any(t.startswith("AUC before the round") and format_value(record.metrics_before["auc"]) in t
               for t in titles)
    after = "candidate promoted" if record.status == "applied" else "candidate rejected by the gate"
    assert any(t.startswith(after) and format_value(record.metrics_after["auc"]) in t for t in titles), titles
    if record.status == "rejected":
        assert any(record.details["gate"] in t for t in titles)
    privacy = record.privacy
    assert any(t.startswith("most-charged pooled learner") and format_value(privacy["epsilon_after_round_max"]) in t
               for t in titles)
    assert any(t.startswith("one round alone") and format_value(privacy["epsilon_one_round"]) in t for t in titles)
    assert f"budget: {format_value(seeded.settings.epsilon_budget)}" in titles
    # The round across sites: the coordinator's round-level epsilon and each site's participation.
    assert any(t.startswith("federation total") and format_value(across.privacy["epsilon_federation"]) in t
               for t in titles)
    sites = console.page.inner_text("main")
    for site in across.details["sites"]:
        assert (site.get("site") or f"node {site['node_id']}") in sites and site["status"] in sites
    assert "node not enrolled in this federation" in sites
    note = console.page.inner_text("main")
    assert f"{len(ledger)} value(s), lowest {format_value(min(ledger))}, highest {format_value(max(ledger))}" in note
    # Drift: every stored score against the threshold it was judged by, and what was really done.
    console.go("/dashboard/drift")
    titles = console.titles()
    for report in drift:
        assert any(t.startswith("drift score") and format_value(report.score) in t for t in titles), report.score
    quiet = drift[0]  # the check run without scheduling
    assert quiet.drifted and quiet.action == {"scheduled": False}
    assert "retraining not scheduled" in console.page.inner_text("main")
    assert "retraining scheduled" not in console.page.inner_text("main").replace("not scheduled", "")
    assert any(t.startswith("input") and format_value(quiet.signals["input"]) in t for t in titles)
    # Local training sessions per day, the version's learning curve, the pipeline job's curve.
    console.go("/dashboard")
    assert any(t.startswith("sessions per day") and f": {sessions} at" in t for t in console.titles())
    console.go(f"/dashboard/models/{seeded.version}")
    history = versions[seeded.version].training_metrics["history"]
    titles = console.titles()
    for epoch in history:
        assert f"validation AUC: {format_value(epoch['validation_auc'])} at epoch {epoch['epoch']}" in titles
    console.go(f"/dashboard/runs/jobs/{seeded.pipeline_job}")
    titles = console.titles()
    for epoch in run.training["history"]:
        assert f"training loss: {format_value(epoch['train_loss'])} at epoch {epoch['epoch']}" in titles
    # Per-subgroup AUC of two versions side by side.
    console.go("/dashboard/models/compare?a=aivo-main-v1&b=aivo-main-v2")
    titles = console.titles()
    for version in ("aivo-main-v1", "aivo-main-v2"):
        for group, metrics in versions[version].training_metrics["test"]["subgroups"]["grade"].items():
            assert f"grade={group}: {version} {format_value(metrics['auc'])}" in titles
    console.check_console()


def test_mastery_over_time_follows_the_learners_answers(console):
    seeded = console.seeded
    console.go(f"/dashboard/learners/{seeded.pseudonym('L004')}")
    titles = [t for t in console.titles() if t.startswith("skill ")]
    with _db(console) as s:
        learner = s.scalar(sa.select(Learner.id).where(Learner.pseudonym == seeded.pseudonym("L004")))
        rows = s.execute(sa.text("SELECT skill_ids, correct FROM interactions WHERE learner_id = :l ORDER BY position"),
                         {"l": learner}).all()
    # One point per attempt and skill it practises (random_log: 4 skills, all plotted), but the
    # learner's first attempt, which nothing earlier predicts; its mark says what was answered.
    scored = [(set(skills.split(";")), correct) for skills, correct in rows[1:]]
    assert len(titles) == sum(len(skills) for skills, _ in scored)
    assert sum("wrong answer" in t for t in titles) == sum(len(skills) for skills, c in scored if c == 0)
    for skill in {x for skills, _ in scored for x in skills}:
        assert sum(t.startswith(f"skill {skill}:") for t in titles) == sum(skill in skills for skills, _ in scored)
    assert all(re.search(r": [01]\.\d{4} at ", t) for t in titles)
    console.check_console()


def test_time_range_choice_narrows_the_charts(console):
    console.go("/dashboard/rounds")
    console.page.click("text=last 24h")
    assert "range=24h" in console.page.url
    assert console.page.locator(".ranges a.here").inner_text() == "last 24h"
    assert console.titles()  # everything was written in the last minutes: still drawn
    console.go("/dashboard/drift?range=7d")
    console.check_console()


def test_a_running_job_shows_its_progress_and_is_cancelled_from_the_dashboard(console):
    seeded = console.seeded
    job = submit_job(registry=seeded.registry, settings=seeded.settings, kind="main_brain", datasheet=SHEET,
                     created_by="tests", config={"brain": {**TINY, "max_epochs": 400, "patience": 400}}, policy=LAX,
                     reason="a long run to watch")
    worker = make_worker(registry=seeded.registry, settings=seeded.settings, poll_s=0.1, heartbeat_s=0.5)
    thread = threading.Thread(target=worker.run_once, daemon=True)
    thread.start()
    try:
        console.go(f"/dashboard/runs/jobs/{job.id}")
        assert console.page.locator("meta[http-equiv=refresh]").count() == 1  # reloads itself while it runs
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            text = console.page.inner_text("main")
            if re.search(r"epoch\s+\d+", text) and "validation AUC" in text:
                break
            time.sleep(1)
            console.page.reload()
        else:
            pytest.fail("the job page never showed an epoch: " + console.page.inner_text("main")[:800])
        assert re.search(r"time left \(estimate\)", text)
        console.shoot("job-running")
        console.page.click("text=Cancel this job…")
        assert "Cancel job" in console.page.inner_text("h1")
        console.page.click("button.danger")
        assert "Cancellation done" in console.page.inner_text("[role=status]")
        thread.join(60)
        assert not thread.is_alive()
        console.page.reload()
        assert "cancelled" in console.page.inner_text("main")
        assert console.page.locator("meta[http-equiv=refresh]").count() == 0
    finally:
        worker.shutdown()
        thread.join(30)
    with _db(console) as s:
        status = s.scalar(sa.text("SELECT status FROM trainer_jobs WHERE id = :j"), {"j": job.id})
        actor = s.scalar(sa.select(AuditEntry.actor).where(AuditEntry.action == "job.cancel",
                                                           AuditEntry.target == f"job-{job.id}"))
    assert status == "cancelled" and actor == f"apikey:{seeded.key_ids['admin']}"
    console.check_console()


def test_promote_and_roll_back_after_confirming(console):
    seeded = console.seeded
    console.go("/dashboard/models/aivo-main-v2")
    console.page.click("text=Promote aivo-main-v2…")
    assert "Promote aivo-main-v2?" in console.page.inner_text("h1")
    console.page.click("button[type=submit]:has-text('Promote')")  # no reason: the browser asks for one
    assert "/promote" in console.page.url
    console.page.fill("#reason", "better on grade 3 in the comparison")
    console.page.click("button[type=submit]:has-text('Promote')")
    assert "Promoted." in console.page.inner_text("[role=status]")
    assert "active" in console.page.inner_text("h1")
    console.go("/dashboard/models/rollback")
    console.page.fill("#reason", "teachers reported odd items")
    console.page.click("button.danger")
    assert "Rolled back." in console.page.inner_text("[role=status]")
    with _db(console) as s:
        active = s.scalar(sa.select(MainModelVersion.version).where(MainModelVersion.status == "active"))
        reasons = [r for (r,) in s.execute(sa.select(AuditEntry.reason).where(
            AuditEntry.action.in_(("main.promote", "main.rollback")),
            AuditEntry.actor == f"apikey:{seeded.key_ids['admin']}"))]
    assert active == "aivo-main-v1"
    assert {"better on grade 3 in the comparison", "teachers reported odd items"} <= set(reasons)
    console.go("/dashboard/models")
    console.shoot("models-after-rollback")
    console.check_console()


def test_find_export_and_erase_a_learner(console):
    seeded = console.seeded
    console.go("/dashboard/learners")
    console.page.fill("input[name=learner_id]", "L007")
    console.page.click("button:has-text('Find')")
    assert console.page.url.endswith(f"/dashboard/learners/{seeded.pseudonym('L007')}")
    assert "L007" not in console.page.url  # the raw id never lands in a URL
    console.page.click("text=Export everything held…")
    with console.page.expect_download() as download:
        console.page.click("text=Download the export")
    document = json.loads(Path(download.value.path()).read_text())
    assert document["format"] == "aivo.learner-export/1" and document["learner"]["learner_id"] == seeded.pseudonym("L007")
    assert len(document["data"]["interactions"]) > 0
    console.go(f"/dashboard/learners/{seeded.pseudonym('L007')}")
    console.page.click("text=Erase this learner…")
    console.page.fill("#reason", "parent's erasure request")
    console.page.fill("#confirm", "erase")  # not the word asked for
    console.page.click("button.danger")
    assert "Type ERASE" in console.page.inner_text("[role=alert]")  # answered 422, the form kept
    console.page.fill("#confirm", "ERASE")
    console.page.click("button.danger")
    assert "was erased" in console.page.inner_text("[role=status]")
    console.page.fill("input[name=learner_id]", "L007")
    console.page.click("button:has-text('Find')")
    assert "No learner with this id in your school" in console.page.inner_text("[role=alert]")
    with _db(console) as s:
        gone = s.scalar(sa.select(Learner.id).where(Learner.pseudonym == seeded.pseudonym("L007"))) is None
        actions = {a for (a,) in s.execute(sa.select(AuditEntry.action).where(
            AuditEntry.actor == f"apikey:{seeded.key_ids['admin']}"))}
    assert gone and {"learner.export", "learner.delete"} <= actions
    console.check_console(422, 404)  # the refused confirmation word, the search for the erased learner


def test_a_teacher_sees_the_class_only(console):
    seeded = console.seeded
    console.sign_out()
    console.sign_in("teacher")
    assert console.page.url.endswith("/dashboard/learners")
    nav = console.page.inner_text("header nav")
    assert "Learners" in nav and "Models" not in nav and "Overview" not in nav
    listed = set(console.page.eval_on_selector_all("main table a", "els => els.map(e => e.getAttribute('href'))"))
    assert listed == {f"/dashboard/learners/{seeded.pseudonym(x)}" for x in ("L001", "L002")}
    assert "Export" not in console.page.inner_text("main")
    console.shoot("teacher-learners")
    console.page.fill("input[name=learner_id]", "L005")
    console.page.click("button:has-text('Find')")
    assert "not on your class list" in console.page.inner_text("[role=alert]")
    response = console.page.goto(console.base + f"/dashboard/learners/{seeded.pseudonym('L005')}")
    assert response.status == 403 and "Not available to you" in console.page.inner_text("main")
    response = console.page.goto(console.base + "/dashboard/models")
    assert response.status == 403
    console.go(f"/dashboard/learners/{seeded.pseudonym('L001')}")
    assert "Erase" not in console.page.inner_text("main")
    console.shoot("teacher-learner")
    console.check_console(403)  # the refused pages above


def test_a_counsellor_sees_the_safety_alerts_only(console):
    console.sign_out()
    console.sign_in("counsellor")
    assert console.page.url.endswith("/dashboard/alerts")
    assert console.page.inner_text("header nav").split() == ["Safety", "alerts"]
    response = console.page.goto(console.base + "/dashboard/learners")
    assert response.status == 403
    console.check_console(403)


def test_sign_out_ends_the_session_and_back_shows_nothing_cached(console):
    console.sign_out()
    console.sign_in("admin")
    console.go("/dashboard/rounds")
    cookie = next(c for c in console.context.cookies() if c["name"] == "aivo_session")
    console.sign_out()
    console.page.go_back()
    console.page.wait_for_load_state()
    assert "/dashboard/login" in console.page.url and "Sign in to AIVO" in console.page.inner_text("body")
    console.context.add_cookies([cookie])  # the old session id, put back by hand: it opens nothing
    console.page.goto(console.base + "/dashboard")
    assert "/dashboard/login" in console.page.url
    console.check_console()
