"""`aivo worker run` as a real process: a killed worker's job is detectably failed once its lease
expires; a worker stopped with SIGTERM puts its job back in the queue (nothing lost, nothing run
twice); `aivo jobs ...` drive the lifecycle from the command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from aivo.services.jobs import fetch_job, submit_job
from aivo.training.worker import reap
from tests.training.conftest import SECRET, TINY_BRAIN
from tests.training.test_jobs import LAX, SHEET

LONG = {"brain": {**TINY_BRAIN, "max_epochs": 1000, "patience": 1000}}


def _env(tmp_path, db_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIVO_")}
    env.update({"AIVO_HOME": str(tmp_path / "home"), "AIVO_DATABASE_URL": db_url, "AIVO_NUM_THREADS": "1",
                "AIVO_SECRET_KEY": SECRET, "AIVO_JOB_LEASE_S": "1.5", "AIVO_ARTIFACT_URL": str(tmp_path / "artifacts"),
                "COLUMNS": "200", **extra})
    return env


def _worker(env, log_path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "aivo", "worker", "run", "--poll", "0.2"], env=env,
                            stdout=open(log_path, "w"), stderr=subprocess.STDOUT, start_new_session=True)


def _wait_for(registry, job_id, predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = fetch_job(registry=registry, job_id=job_id)
        if predicate(job):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} never reached the expected state: {job.status} {job.progress}")


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_killed_worker_leaves_a_detectably_failed_job(loaded, settings, tmp_path, db_url):
    job = submit_job(registry=loaded, settings=settings, kind="main_brain", datasheet=SHEET, created_by="t",
                     config=LONG, policy=LAX)
    worker = _worker(_env(tmp_path, db_url), tmp_path / "worker.log")
    try:
        running = _wait_for(loaded, job.id, lambda j: j.progress.get("stage") == "searching")
        assert running.status == "running" and running.worker_id.split(":")[2] == str(worker.pid)
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
    time.sleep(1.6)
    (failed,) = reap(registry=loaded)
    assert failed.id == job.id and failed.status == "failed"
    assert "lease of worker" in failed.error and "expired" in failed.error
    assert failed.candidate_version is None


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_sigterm_requeues_the_job_and_cli_drives_the_lifecycle(loaded, settings, tmp_path, db_url, run_cli):
    env = _env(tmp_path, db_url)
    aivo_env = {k: v for k, v in env.items() if k.startswith("AIVO_")}
    run = lambda *args: run_cli(*args, env=aivo_env, timeout=120)  # noqa: E731
    sheet = tmp_path / "sheet.json"
    sheet.write_text(json.dumps(SHEET))
    out = run("jobs", "create", "--datasheet", f"@{sheet}", "--config", json.dumps(LONG), "--policy",
              json.dumps(LAX), "--reason", "cli", "--json")
    assert out.returncode == 0, out.stderr
    job_id = json.loads(out.stdout)["id"]

    worker = _worker(env, tmp_path / "worker.log")
    try:
        _wait_for(loaded, job_id, lambda j: j.progress.get("stage") == "searching")
        stopped = time.monotonic()
        os.killpg(worker.pid, signal.SIGTERM)
        assert worker.wait(15) == 0
        assert time.monotonic() - stopped < 10
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
    job = fetch_job(registry=loaded, job_id=job_id)
    assert (job.status, job.attempts, job.worker_id) == ("queued", 1, None)
    assert "shut down" in job.error

    cancel = run("jobs", "cancel", str(job_id), "--json")  # the queued job: cancelled at once
    assert cancel.returncode == 0 and json.loads(cancel.stdout)["status"] == "cancelled"
