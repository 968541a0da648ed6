"""Two real `aivo scheduler run` processes on one database: one leads, no firing runs twice, and
the standby takes over when the leader is killed. The interval jobs are set to fire every second
(DRIFT_CHECK_INTERVAL_HOURS=1/3600) so that the test sees many firings in a few seconds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
import sqlalchemy as sa

from aivo.registry.tables import SchedulerRun

ONE_SECOND_IN_HOURS = str(1 / 3600)


def _env(tmp_path, db_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIVO_")}
    env.update({"AIVO_HOME": str(tmp_path / "home"), "AIVO_DATABASE_URL": db_url, "AIVO_NUM_THREADS": "1",
                "AIVO_SECRET_KEY": "scheduler-process-tests-0123456789", "AIVO_JOB_LEASE_S": "1.5",
                "AIVO_DRIFT_CHECK_INTERVAL_HOURS": ONE_SECOND_IN_HOURS,
                "AIVO_ADAPTIVE_CHECK_INTERVAL_HOURS": ONE_SECOND_IN_HOURS})
    return env


def _start(env, log_path):
    log = open(log_path, "w")
    return subprocess.Popen([sys.executable, "-m", "aivo", "scheduler", "run", "--no-worker"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def _runs(engine) -> list[tuple[str, object, str]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(SchedulerRun.job_name, SchedulerRun.scheduled_for,
                                                         SchedulerRun.instance_id))]


def _leader(engine) -> str | None:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT owner FROM service_leases WHERE name = 'scheduler'")).scalar()


def _wait(predicate, timeout: float, what: str, procs=(), logs=()):
    """Poll until `predicate` holds. The timeouts are bounds for a loaded machine (two processes
    importing the package can take half a minute there), not expectations: a process that exits
    fails the wait at once, with its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        for proc, log in zip(procs, logs):
            if proc.poll() is not None:
                raise AssertionError(f"a scheduler process exited ({proc.returncode}) while waiting for {what}:\n"
                                     f"{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)  # SQLite: the same logic, tested in-process
def test_two_scheduler_processes_never_run_a_firing_twice(tmp_path, db_url, engine):
    env = _env(tmp_path, db_url)
    first = _start(env, tmp_path / "first.log")
    second = _start(env, tmp_path / "second.log")
    procs = [first, second]
    try:
        logs = (tmp_path / "first.log", tmp_path / "second.log")
        leader = _wait(lambda: _leader(engine), 180, "a leader", procs, logs)
        # Both processes are up (the second may still be importing); let firings accumulate.
        _wait(lambda: len(_runs(engine)) >= 8, 120, "firings", procs, logs)
        runs = _runs(engine)
        owners = Counter(owner for _, _, owner in runs)
        assert set(owners) == {leader}, f"runs by several processes while one led: {owners}"
        # Kill the leader without any goodbye: the other one takes over once the lease expires.
        by_pid = {p.pid: p for p in procs}
        killed = by_pid[int(leader.split(":")[2])]
        os.killpg(killed.pid, signal.SIGKILL)
        killed.wait(10)
        survivors = [p for p in procs if p is not killed]
        survivor_logs = [log for p, log in zip(procs, logs) if p is not killed]
        new_leader = _wait(lambda: (lambda o: o if o and o != leader else None)(_leader(engine)), 120, "failover",
                           survivors, survivor_logs)
        count = len(runs)
        _wait(lambda: sum(1 for r in _runs(engine) if r[2] == new_leader) >= 2, 120, "firings by the new leader",
              survivors, survivor_logs)
        runs = _runs(engine)
        assert len(runs) > count
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
    firings = Counter((job, at) for job, at, _ in runs)
    assert max(firings.values()) == 1  # the database refuses a second row; check nothing else slipped by
    for job in ("drift_monitor", "adaptive_training_check"):
        times = sorted(at for name, at, _ in runs if name == job)
        gaps = {round((b - a).total_seconds(), 3) for a, b in zip(times, times[1:])}
        assert times and gaps <= {1.0, 2.0, 3.0}, gaps  # firings on the 1 s grid; a hand-over may skip some
        assert all(t.microsecond == 0 for t in times)
    survivor = next(p for p in procs if p is not killed)
    assert survivor.returncode == 0  # SIGTERM: clean shutdown
    assert "is now the leader" in (tmp_path / ("first.log" if survivor is first else "second.log")).read_text()
