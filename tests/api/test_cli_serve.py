"""`aivo apikey ...` and `aivo serve` as real subprocesses (embedded SQLite)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx

from .conftest import free_port


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """`aivo ...` in this process (interpreter starts are slow here); one test runs real subprocesses."""
    from aivo.cli import main

    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_apikey_create_list_link_revoke(run_cli, capsys):
    created = run_cli("apikey", "create", "--role", "teacher", "--tenant", "school-9", "--name", "ms. rivera",
                      "-l", "s-1,s-2", "--learner", "s-3", "--json")
    assert created.returncode == 0, created.stderr
    body = json.loads(created.stdout)
    key_id, token = body["key"]["key_id"], body["token"]
    assert token.startswith(f"aivo_{key_id}_") and body["key"]["num_learners"] == 3
    code, out, _ = cli(capsys, "apikey", "list", "--json")
    listed = json.loads(out)
    assert code == 0 and [k["key_id"] for k in listed] == [key_id] and "token" not in listed[0]
    assert token not in cli(capsys, "apikey", "list")[1]
    assert json.loads(cli(capsys, "apikey", "link", key_id, "s-4", "s-1", "--json")[1]) == {"key_id": key_id,
                                                                                            "linked": 1}
    assert json.loads(cli(capsys, "apikey", "unlink", key_id, "s-2", "--json")[1])["unlinked"] == 1
    code, out, _ = cli(capsys, "apikey", "revoke", key_id, "--reason", "left the school", "--json")
    assert code == 0 and json.loads(out)["revoked_at"]
    assert json.loads(cli(capsys, "apikey", "list", "--json")[1]) == []
    assert len(json.loads(cli(capsys, "apikey", "list", "--all", "--json")[1])) == 1
    code, _, err = cli(capsys, "apikey", "revoke", key_id)
    assert code == 5 and "already revoked" in err


def test_apikey_mistakes_are_one_line_errors(capsys):
    code, _, err = cli(capsys, "apikey", "create", "--role", "root", "--tenant", "x")
    assert code == 3 and "invalid role 'root'" in err and "Traceback" not in err
    code, _, err = cli(capsys, "apikey", "create", "--role", "admin", "--tenant", "a b")
    assert code == 3 and "invalid tenant" in err
    code, _, err = cli(capsys, "apikey", "create", "--role", "admin", "--tenant", "x", "-l", "s1")
    assert code == 3 and "only teacher keys" in err
    code, _, err = cli(capsys, "apikey", "revoke", "000000000000")
    assert code == 4 and "does not exist" in err


def test_scheduler_in_the_api_needs_one_worker(capsys):
    code, _, err = cli(capsys, "serve", "--workers", "2", "--scheduler", "--port", str(free_port()))
    assert code == 2 and "aivo scheduler run" in err


def test_serve_with_two_workers(aivo_home, capsys):
    token = json.loads(cli(capsys, "apikey", "create", "--role", "service", "--tenant", "default", "--json")[1])["token"]
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIVO_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update({"AIVO_HOME": str(aivo_home), "AIVO_NUM_THREADS": "1"})
    proc = subprocess.Popen([sys.executable, "-m", "aivo", "serve", "--port", str(port), "--workers", "2"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                            cwd=str(aivo_home.parent))
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        health = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                health = httpx.get(base + "/health", timeout=5).json()
                break
            except httpx.HTTPError:
                time.sleep(0.3)
        assert health is not None, proc.stdout.read().decode() if proc.poll() is not None else "no answer"
        assert health["database"]["ok"] and health["status"] == "degraded"  # no Main Brain yet
        assert "aivo scheduler run" in health["scheduler"]["note"]
        headers = {"X-API-Key": token}
        rows = [{"learner_id": "s1", "item_id": "q1", "correct": 1, "order": i} for i in range(3)]
        for _ in range(6):  # several connections, so both workers answer some
            with httpx.Client(base_url=base, headers=headers) as c:
                assert c.post("/v1/interactions", json={"interactions": rows}).status_code == 201
        with httpx.Client(base_url=base, headers=headers) as c:
            rec = c.get("/v1/learners/s1/recommendations")
            metrics = c.get("/metrics").text
        assert rec.status_code == 409 and "no active Main Brain" in rec.json()["detail"]
        count = [line for line in metrics.splitlines()
                 if line.startswith('aivo_http_requests_total{method="POST",route="/v1/interactions",status="201"}')]
        assert count and float(count[0].split()[-1]) == 6.0  # summed over both workers
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    assert proc.returncode == 0


def test_scheduler_runs_in_a_single_worker_api(tmp_path):
    """create_app(scheduler=True): the scheduler starts with the app, takes the lease, shows in
    /health, and stops with the app. Schedules are set far from now: nothing fires."""
    from datetime import datetime, timedelta, timezone

    from aivo.api import create_app

    from aivo.registry.api_keys import create_api_key

    from .conftest import ServerThread, make_settings

    later = datetime.now(timezone.utc) + timedelta(hours=12)
    weekday = (later + timedelta(days=3)).strftime("%A").lower()
    settings = make_settings(tmp_path / "home", None, scheduler_enabled=True, job_lease_s=3.0,
                             main_brain_training_schedule=f"0 {later.hour} * * *",
                             federated_aggregation_schedule=f"30 {later.hour} * * *",
                             weekly_retraining_day=weekday, weekly_retraining_hour=later.hour)
    app = create_app(settings, tutor=False)
    with ServerThread(app) as base:
        deadline = time.monotonic() + 20
        while True:
            scheduler = httpx.get(base + "/health").json()["scheduler"]
            if scheduler.get("running") or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert scheduler["in_process"] and scheduler["process_running"]
        assert scheduler["running"] and scheduler["process_leads"] and "leader" not in scheduler  # anonymous
        with app.state.registry.session() as session:
            token = create_api_key(session=session, role="service", tenant="default", name="t", actor="tests").token
        keyed = httpx.get(base + "/health", headers={"Authorization": f"Bearer {token}"}).json()["scheduler"]
        assert keyed["leader"]  # the lease holder (host and process) only for a caller with a key
    handle = app.state.hooks.scheduler
    assert not handle.running  # stopped with the app
