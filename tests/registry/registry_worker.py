"""A separate process that writes to a registry, for the concurrency and crash tests.

    python registry_worker.py MODE DB_URL STORE_DIR [ARGS...]

Modes:
- churn WORKER ITERATIONS: registers learner models and promotes/rolls back versions at random;
  prints a JSON summary of what succeeded.
- pause-at POINT NAME MARKER: writes main version NAME and promotes it, but stops at POINT
  (`artifact-write`: halfway through writing the artifact; `before-commit-register`: row
  inserted, not committed; `before-commit-promote`: promotion done, not committed), touches
  MARKER and sleeps until killed.
- loop PREFIX: writes and promotes versions (1 MB artifacts) forever, until killed.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.orm import Session

from aivo.errors import ConflictError
from aivo.registry import (
    ArtifactStore,
    Registry,
    make_engine,
    promote_main_version,
    register_learner_model,
    register_main_version,
    rollback_main_version,
)
from aivo.registry import artifacts as artifacts_module


def _pause(marker: str) -> None:
    Path(marker).write_text(str(os.getpid()))
    time.sleep(120)
    raise SystemExit("not killed in time")


def churn(reg: Registry, worker: int, iterations: int) -> dict:
    rng = random.Random(worker)
    done = {"registered": 0, "promotions": 0, "rollbacks": 0, "conflicts": 0}
    versions = [f"v{i}" for i in range(1, 5)]
    for i in range(iterations):
        action = rng.choice(["register", "promote", "promote", "rollback"])
        try:
            if action == "register":
                ref = reg.store.put_bytes(f"head-{worker}-{i}".encode() * 10)
                reg.run(lambda s: register_learner_model(session=s, store=reg.store, learner_id=f"w{worker}-{i}",
                                                         source_version="v1", artifact=ref))
                done["registered"] += 1
            elif action == "promote":
                version = rng.choice(versions)
                reg.run(lambda s: promote_main_version(session=s, version=version, actor=f"w{worker}", reason="churn"))
                done["promotions"] += 1
            else:
                reg.run(lambda s: rollback_main_version(session=s, actor=f"w{worker}", reason="churn"))
                done["rollbacks"] += 1
        except ConflictError:
            done["conflicts"] += 1
    return done


PHASE = {"now": None}


def write_version(reg: Registry, name: str, size: int = 1 << 20) -> None:
    ref = reg.store.put_bytes(os.urandom(size))
    PHASE["now"] = "register"
    with reg.session() as s:
        register_main_version(session=s, store=reg.store, version=name, artifact=ref, architecture={"n": size})
    PHASE["now"] = "promote"
    with reg.session() as s:
        promote_main_version(session=s, version=name, actor="worker", reason="crash test")


def pause_at(reg: Registry, point: str, name: str, marker: str) -> None:
    if point == "artifact-write":
        original = artifacts_module._LocalBackend.write_atomic

        def halfway(self, key, chunks):
            data = b"".join(chunks)

            def gen():
                yield data[: len(data) // 2]
                _pause(marker)
                yield data[len(data) // 2:]

            return original(self, key, gen())

        artifacts_module._LocalBackend.write_atomic = halfway
    else:
        wanted = {"before-commit-register": "register", "before-commit-promote": "promote"}[point]

        @event.listens_for(Session, "before_commit")
        def hook(session):
            # The outer commit of the wanted phase: its statements ran, the COMMIT has not.
            if PHASE["now"] == wanted and not session.in_nested_transaction():
                _pause(marker)

    write_version(reg, name)


def loop(reg: Registry, prefix: str) -> None:
    for i in range(10**9):
        write_version(reg, f"{prefix}-{i}", size=(1 << 20) + i)


def main(argv: list[str]) -> None:
    mode, url, store_dir, *args = argv
    reg = Registry(engine=make_engine(url), store=ArtifactStore(store_dir))
    if mode == "churn":
        print(json.dumps(churn(reg, int(args[0]), int(args[1]))))
    elif mode == "pause-at":
        pause_at(reg, *args)
    elif mode == "loop":
        loop(reg, args[0])
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main(sys.argv[1:])
