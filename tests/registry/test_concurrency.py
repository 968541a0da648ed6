"""Many writers at once, threads and processes, on both backends: never two active versions,
never a lost write, and readers always see exactly one active version."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import sqlalchemy as sa

from aivo.errors import ConflictError
from aivo.registry import (
    get_statistics,
    list_audit,
    promote_main_version,
    register_learner_model,
    rollback_main_version,
    verify_registry,
)
from aivo.registry.tables import MainModelVersion
from tests.registry.helpers import add_version, stored

WORKER = Path(__file__).with_name("registry_worker.py")


def _setup_versions(registry, clock) -> None:
    with registry.session() as s:
        for i in range(1, 5):
            add_version(s, registry.store, f"v{i}", clock=clock)
        promote_main_version(session=s, version="v1", actor="setup", reason="setup", clock=clock)


class ActiveWatcher(threading.Thread):
    """Counts active versions over and over while the writers run."""

    def __init__(self, engine):
        super().__init__(daemon=True)
        self.engine, self.stop, self.seen = engine, threading.Event(), set()

    def run(self) -> None:
        stmt = sa.select(sa.func.count()).select_from(MainModelVersion).where(MainModelVersion.status == "active")
        while not self.stop.is_set():
            with self.engine.connect() as conn:
                self.seen.add(conn.execute(stmt).scalar_one())


def _check_final_state(registry, *, registered: int, promotions: int, rollbacks: int) -> None:
    with registry.session(read_only=True) as s:
        stats = get_statistics(session=s)
        audit = list_audit(session=s, limit=10_000)
        assert verify_registry(session=s, store=registry.store).ok
        assert s.scalar(sa.select(sa.func.count()).select_from(MainModelVersion)
                        .where(MainModelVersion.status == "active")) == 1
    assert stats.total_learner_models == registered
    assert sum(a.action == "main.promote" for a in audit) == promotions + 1  # + the setup promotion
    assert sum(a.action == "main.rollback" for a in audit) == rollbacks
    # The audit trail chains: each change starts from the version the previous one left active.
    chain = [a.details for a in reversed(audit) if a.action.startswith("main.")]
    for before, after in zip(chain, chain[1:]):
        assert after["previous_version"] == before["new_version"]
    assert stats.active_main_version == chain[-1]["new_version"]


def test_threads(registry, clock):
    _setup_versions(registry, clock)
    counts = {"registered": 0, "promotions": 0, "rollbacks": 0}
    lock = threading.Lock()
    errors: list[BaseException] = []
    watcher = ActiveWatcher(registry.engine)
    watcher.start()

    def writer(worker: int) -> None:
        try:
            for i in range(12):
                kind = ("register", "promote", "rollback")[(worker + i) % 3]
                try:
                    if kind == "register":
                        ref = stored(registry.store, f"head-{worker}-{i}")
                        registry.run(lambda s: register_learner_model(
                            session=s, store=registry.store, learner_id=f"t{worker}-{i}", source_version="v1",
                            artifact=ref))
                        key = "registered"
                    elif kind == "promote":
                        version = f"v{1 + (worker * 7 + i) % 4}"
                        registry.run(lambda s: promote_main_version(session=s, version=version, actor=f"t{worker}",
                                                                    reason="race"))
                        key = "promotions"
                    else:
                        registry.run(lambda s: rollback_main_version(session=s, actor=f"t{worker}", reason="race"))
                        key = "rollbacks"
                    with lock:
                        counts[key] += 1
                except ConflictError:
                    pass
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    watcher.stop.set()
    watcher.join(timeout=10)
    assert not errors, errors
    assert watcher.seen == {1}
    assert counts["promotions"] > 0 and counts["registered"] == 24
    _check_final_state(registry, **counts)


def test_processes(registry, db_url, clock):
    _setup_versions(registry, clock)
    watcher = ActiveWatcher(registry.engine)
    watcher.start()
    procs = [subprocess.Popen([sys.executable, str(WORKER), "churn", db_url, str(registry.store.url), str(w), "15"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for w in range(4)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    watcher.stop.set()
    watcher.join(timeout=10)
    assert watcher.seen == {1}
    total = {k: sum(r[k] for r in results) for k in ("registered", "promotions", "rollbacks")}
    assert total["promotions"] > 0
    _check_final_state(registry, **total)
