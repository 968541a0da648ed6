"""What one API process keeps between requests, and the extension points other packages use.

`create_app` puts these on `app.state`:

- `settings`, `registry`, `clock`, `key_verifier`, `metrics`, `api_stats`;
- `recommendation_cache` (see recommendation_cache.py) and `loaded_artifacts` (digests of the
  Main Brain versions this process holds in memory);
- `tutor_service` (aivo.tutor) when the tutor is mounted;
- `hooks` (`ApiHooks`): the in-process scheduler and the callbacks below (ingest listeners,
  model-status details, dashboard panels), which other packages register on the app.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aivo.registry import MainVersionRecord
from aivo.services.scheduler import scheduler_status as read_status

log = logging.getLogger(__name__)


class SchedulerHandle(Protocol):
    """What the API needs from an in-process scheduler (aivo.scheduler.runner.TrainingScheduler)."""

    @property
    def running(self) -> bool: ...

    @property
    def is_leader(self) -> bool: ...

    def stop(self) -> None: ...


@dataclass
class ApiHooks:
    # The in-process scheduler, when this process runs it (single worker only).
    scheduler: SchedulerHandle | None = None
    # Why there is no in-process scheduler ("disabled", "runs in `aivo scheduler run`", ...).
    scheduler_note: str = "not started"
    # Called after a batch is stored, with the pseudonyms of its learners (the adaptive
    # orchestrator schedules learner-model updates from here). Exceptions are logged.
    ingest_listeners: list[Callable[[list[str]], None]] = field(default_factory=list)
    # Extra fields for GET /v1/model/{id}/status (training state, drift): (model_id, version) -> dict.
    model_details: list[Callable[[str, MainVersionRecord | None], dict[str, Any]]] = field(default_factory=list)
    # More dashboard panels (drift scores, job queues): each returns (title, HTML or SVG from
    # aivo.api.plots). Called per page view, in a worker thread.
    dashboard_panels: list[Callable[[], tuple[str, str]]] = field(default_factory=list)


class ApiStats:
    """Per-process counters for GET /stats (Prometheus has the cross-worker totals)."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self.batches = 0
        self.interactions_ingested = 0
        self.recommendations = 0
        self.recommendations_cached = 0

    def add_ingest(self, *, rows: int) -> None:
        with self._lock:
            self.batches += 1
            self.interactions_ingested += rows

    def add_recommendation(self, *, cached: bool) -> None:
        with self._lock:
            self.recommendations += 1
            self.recommendations_cached += int(cached)

    def snapshot(self, **extra: Any) -> dict[str, Any]:
        with self._lock:
            return {"uptime_s": round(time.monotonic() - self.started, 1), "ingest_batches": self.batches,
                    "interactions_ingested": self.interactions_ingested, "recommendations": self.recommendations,
                    "recommendations_cached": self.recommendations_cached, **extra}


# --- helpers the routers call with `request.app.state` -------------------------------------------

def notify_ingest(state: Any, learner_ids: list[str]) -> None:
    for listener in state.hooks.ingest_listeners:
        try:
            listener(learner_ids)
        except Exception:  # the batch is stored; a failing listener must not turn that into an error
            log.exception("ingest listener %r failed", listener)


def forget_learner(state: Any, *, learner_pk: int, pseudonym: str) -> None:
    """Drop what this process holds about an erased learner."""
    state.recommendation_cache.invalidate_learners({learner_pk})
    tutor = getattr(state, "tutor_service", None)
    if tutor is not None:
        tutor.forget_learner(pseudonym)


def model_details(state: Any, model_id: str, record: MainVersionRecord | None) -> dict[str, Any]:
    details: dict[str, Any] = {}
    for provider in state.hooks.model_details:
        try:
            details.update(provider(model_id, record))
        except Exception:
            log.exception("model details provider %r failed", provider)
    return details


def scheduler_status(state: Any) -> dict[str, Any]:
    """For /health: is a scheduler leading (from the database, wherever it runs), and is it this
    process. Blocking (database reads)."""
    handle = state.hooks.scheduler
    out: dict[str, Any] = {"in_process": handle is not None, "note": state.hooks.scheduler_note}
    if handle is not None:
        out.update(process_running=handle.running, process_leads=handle.is_leader)
    try:
        # /health needs no key: it never names a learner's model.
        status = read_status(registry=state.registry, settings=state.settings, clock=state.clock,
                             tenant=None)["scheduler"]
    except Exception as exc:  # health reports, never raises
        out.update(running=False, error=f"{type(exc).__name__}: {exc}")
        return out
    out.update(running=status["running"], enabled=status["enabled"], leader=status["leader"],
               lease_expires_at=status["lease_expires_at"],
               models_training=[m["model_id"] for m in status["models_training"]],
               last_training=status["last_training"])
    return out
