"""Crash safety: SIGKILL a writer mid-artifact, mid-registration, mid-promotion, and at random
moments. Afterwards no row points at a missing or partial artifact, exactly one version is
active, and the registry keeps working."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from aivo.clock import FrozenClock
from aivo.registry import (
    collect_garbage,
    get_active_main_version,
    list_main_versions,
    promote_main_version,
    verify_registry,
)
from tests.registry.helpers import add_version

WORKER = Path(__file__).with_name("registry_worker.py")


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(WORKER), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for(marker: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"worker exited early: {proc.stderr.read().decode()[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("worker never reached the pause point")
        time.sleep(0.02)


def _kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def _assert_consistent(registry, *, active: str | None = None) -> None:
    with registry.session(read_only=True) as s:
        check = verify_registry(session=s, store=registry.store, deep=True)
        assert check.ok, check.problems
        assert check.active_versions == 1
        if active is not None:
            assert get_active_main_version(session=s).version == active
        # Every version's artifact loads (verified) and has the size its row says.
        for version in list_main_versions(session=s, limit=1000):
            assert len(registry.store.get_bytes(version.artifact_sha256)) == version.artifact_size


@pytest.fixture
def with_active(registry, clock):
    with registry.session() as s:
        add_version(s, registry.store, "v1", clock=clock)
        promote_main_version(session=s, version="v1", actor="setup", reason="setup", clock=clock)


@pytest.mark.parametrize("point", ["artifact-write", "before-commit-register", "before-commit-promote"])
def test_sigkill_at_each_point(registry, db_url, tmp_path, with_active, point):
    marker = tmp_path / "paused"
    proc = _start("pause-at", db_url, registry.store.url, point, "v2", str(marker))
    _wait_for(marker, proc)
    _kill(proc)

    _assert_consistent(registry, active="v1")
    with registry.session(read_only=True) as s:
        names = {v.version: v.status for v in list_main_versions(session=s)}
    # Registration committed only in the promotion case; the killed promotion left no trace.
    assert names == ({"v1": "active", "v2": "candidate"} if point == "before-commit-promote" else {"v1": "active"})
    leftovers = list((Path(registry.store.url) / "tmp").glob("*.part"))
    assert bool(leftovers) == (point == "artifact-write")  # a half-written temp file, never an artifact
    # The registry keeps working: no lock is left behind by the dead writer.
    with registry.session() as s:
        add_version(s, registry.store, "v3", clock=FrozenClock(datetime.now(timezone.utc)))
        promote_main_version(session=s, version="v3", actor="test", reason="after crash")
    later = FrozenClock(datetime.now(timezone.utc) + timedelta(hours=2))
    with registry.session() as s:
        gc = collect_garbage(session=s, store=registry.store, dry_run=False, min_age_s=60, clock=later)
    assert gc.temp_files_removed == len(leftovers)
    _assert_consistent(registry, active="v3")


def test_sigkill_at_random_moments(registry, db_url, with_active):
    rng = random.Random(7)
    for round_ in range(2):
        before = _count_versions(registry)
        proc = _start("loop", db_url, registry.store.url, f"r{round_}")
        deadline = time.monotonic() + 60
        while _count_versions(registry) == before:  # wait until it is writing versions in a loop
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the worker never wrote a version"
            time.sleep(0.05)
        time.sleep(rng.random() * 0.5)  # then kill it at some point of its next writes
        _kill(proc)
        _assert_consistent(registry)


def _count_versions(registry) -> int:
    with registry.session(read_only=True) as s:
        return len(list_main_versions(session=s, limit=10_000))
