"""Where cache misses are computed: in recommender processes, not in the API worker.

Computing a recommendation runs the Main Brain and pandas feature code over the whole item
catalog: tens to hundreds of milliseconds of Python holding the GIL. Run in a thread of the API
worker, it would stall that worker's event loop, and with it every cached answer queued behind
it. So each API worker hands misses to a small pool of its own processes
(`AIVO_RECOMMENDER_PROCESSES`, default 1; 0 computes in a worker thread instead). A recommender
process opens the registry once, keeps the Main Brain in memory (the service layer's cache),
and answers `(pseudonym, num_items, now, policy)` with the recommendation as a dict.

Processes are started with `spawn` (never `fork`: the API process runs threads) when the app
starts, and warmed up there, so the first miss does not pay for interpreter start-up.
"""

from __future__ import annotations

import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from datetime import datetime
from typing import Any

import torch

from aivo.clock import FrozenClock
from aivo.config import Settings
from aivo.services.main_brain import load_main_brain
from aivo.services.recommendations import recommend_for_learner
from aivo.services.runtime import open_registry

log = logging.getLogger(__name__)

_registry = None
_settings: Settings | None = None


def _init(settings: Settings) -> None:
    global _registry, _settings
    torch.set_num_threads(settings.num_threads or 1)  # one process per core does the parallelism
    _settings = settings
    _registry = open_registry(settings, threads=False)


def _warm_up() -> str | None:
    try:
        return load_main_brain(registry=_registry).version.version
    except Exception as exc:  # no active version yet: nothing to load
        return f"not loaded: {exc}"


def _compute(pseudonym: str, num_items: int, now: datetime, policy: str | None = None) -> dict[str, Any]:
    rec = recommend_for_learner(registry=_registry, settings=_settings, learner_id=pseudonym, num_items=num_items,
                                clock=FrozenClock(now), policy_name=policy)
    return asdict(rec)


class RecommenderPool:
    """`compute(...)` blocks until a recommender process answers (call it from a worker thread)."""

    def __init__(self, *, settings: Settings, processes: int):
        self.processes = processes
        self._pool = ProcessPoolExecutor(max_workers=processes, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_init, initargs=(settings,))

    def warm_up(self) -> None:
        """Start every process and load the Main Brain in each (blocking)."""
        futures = [self._pool.submit(_warm_up) for _ in range(self.processes)]
        loaded = [f.result() for f in futures]
        log.info("%d recommender process(es) ready: %s", self.processes, ", ".join(map(str, loaded)))

    def compute(self, *, pseudonym: str, num_items: int, now: datetime, policy: str | None = None) -> dict[str, Any]:
        return self._pool.submit(_compute, pseudonym, num_items, now, policy).result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
