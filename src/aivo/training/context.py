"""What a running job sees: its record, the registry, a stop flag and a progress reporter.

The worker's heartbeat thread sets the stop flag when the job is cancelled (DELETE
/trainer/jobs/{id}), when the worker loses the lease, or when the worker shuts down; training
polls `should_stop()` between batches (a cheap `threading.Event` check, no database round trip).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.config import Settings
from aivo.registry import Registry
from aivo.training.jobs import TrainerJobRecord

STOP_REASONS = ("cancelled", "lease_lost", "shutdown")
LOG_LINES = 50  # progress messages a job keeps (the newest)
MAX_CURVE_POINTS = 500


@dataclass
class JobOutcome:
    """What a job kind hands back to the worker when it finishes."""

    result: dict[str, Any]
    candidate_version: str | None = None
    evaluation: dict[str, Any] | None = None
    evaluation_passed: bool | None = None
    promoted_version: str | None = None

    def fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.candidate_version is not None:
            out["candidate_version"] = self.candidate_version
        if self.evaluation is not None:
            out["evaluation"] = self.evaluation
            out["evaluation_passed"] = self.evaluation_passed
        if self.promoted_version is not None:
            out["promoted_version"] = self.promoted_version
        return out


@dataclass
class JobContext:
    job: TrainerJobRecord
    registry: Registry
    settings: Settings
    worker_id: str
    clock: Clock = SYSTEM_CLOCK
    _stop: threading.Event = field(default_factory=threading.Event)
    stop_reason: str | None = None
    progress: dict[str, Any] = field(default_factory=lambda: {"stage": "validating", "fraction": 0.0})

    def should_stop(self) -> bool:
        return self._stop.is_set()

    def request_stop(self, reason: str) -> None:
        if reason not in STOP_REASONS:
            raise ValueError(f"unknown stop reason {reason!r}")
        if self.stop_reason is None:
            self.stop_reason = reason
        self._stop.set()

    def report(self, stage: str, fraction: float | None, message: str, **figures: Any) -> None:
        """Progress for GET /trainer/jobs/{id} and the dashboard; written to the row at the next
        heartbeat. `figures` are numbers of the moment (epoch, max_epochs, trial, trials,
        validation_auc, train_loss); an epoch's figures are also appended to `curve` (the running
        trial's learning curve), and each new message to `log` (the last LOG_LINES, timestamped)."""
        previous = self.progress
        log = list(previous.get("log") or [])
        if message and (not log or log[-1].get("message") != message[:500]):
            log = (log + [{"at": self.clock.now().isoformat(), "stage": stage, "message": message[:500]}])[-LOG_LINES:]
        curve = list(previous.get("curve") or [])
        if "epoch" in figures:
            if curve and figures.get("trial") != curve[-1].get("trial"):
                curve = []  # a new trial starts a new curve
            point = {k: figures.get(k) for k in ("trial", "epoch", "train_loss", "validation_auc")}
            curve = (curve + [point])[-MAX_CURVE_POINTS:]
        self.progress = {"stage": stage, "fraction": None if fraction is None else round(float(fraction), 4),
                         "message": message[:500], **{k: v for k, v in figures.items() if v is not None},
                         "log": log, "curve": curve}
