"""Clone jobs: fine-tune a learner's adapter in a background thread and report progress.

`CloneTracker.start` records the job and returns at once; one background thread runs the
jobs in order (fine-tuning is CPU/GPU heavy, so jobs never run side by side). Status moves
through the seed design's stages:

    queued -> loading_base_model -> creating_adapter -> fine_tuning -> saving -> completed | failed

Every change is written to `<root>/<clone_id>.json` (atomically), so a status survives a
restart; a job that was still running when the process died reads as failed.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.errors import AivoError, NotFoundError

log = logging.getLogger(__name__)

TERMINAL = ("completed", "failed")
STAGES = ("queued", "loading_base_model", "creating_adapter", "fine_tuning", "saving", "completed", "failed")


@dataclass(frozen=True)
class CloneStatus:
    clone_id: str
    learner_id: str
    status: str
    progress: int  # 0-100
    message: str
    created_at: str
    updated_at: str
    estimated_time_seconds: float
    adapter_sha256: str | None = None
    error: str | None = None
    metrics: dict | None = None

    @property
    def done(self) -> bool:
        return self.status in TERMINAL


class Reporter:
    """Handed to a running job: `report(stage, progress, message)`."""

    def __init__(self, tracker: "CloneTracker", clone_id: str):
        self._tracker = tracker
        self._clone_id = clone_id

    def __call__(self, status: str, progress: float, message: str) -> None:
        if status not in STAGES or status in TERMINAL:
            raise ValueError(f"not a running stage: {status}")
        self._tracker._update(self._clone_id, status=status, progress=int(max(0, min(99, progress))),
                              message=message)


# A job body: (reporter) -> (adapter sha256, metrics). Exceptions fail the job.
CloneWork = Callable[[Reporter], tuple[str, dict]]


class CloneTracker:
    def __init__(self, *, root: Path, clock: Clock = SYSTEM_CLOCK):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self._lock = threading.Lock()
        self._statuses: dict[str, CloneStatus] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aivo-tutor-clone")
        self._recover()

    def start(self, *, learner_id: str, work: CloneWork, estimated_time_seconds: float) -> CloneStatus:
        clone_id = "clone_" + uuid.uuid4().hex[:16]
        now = self.clock.now().isoformat()
        status = CloneStatus(clone_id=clone_id, learner_id=learner_id, status="queued", progress=0,
                             message="Waiting for the clone worker", created_at=now, updated_at=now,
                             estimated_time_seconds=round(estimated_time_seconds, 1))
        with self._lock:
            self._statuses[clone_id] = status
            self._write(status)
        self._executor.submit(self._run, clone_id, work)
        return status

    def status(self, clone_id: str) -> CloneStatus:
        with self._lock:
            status = self._statuses.get(clone_id)
        if status is None:
            status = self._read(clone_id)
        if status is None:
            raise NotFoundError(f"no clone job {clone_id!r}")
        return status

    def wait(self, clone_id: str, *, timeout: float = 600.0, poll_s: float = 0.05) -> CloneStatus:
        """Block until the job is completed or failed (CLI and tests)."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            status = self.status(clone_id)
            if status.done:
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"clone {clone_id} still {status.status} after {timeout}s")
            time.sleep(poll_s)

    def close(self, *, wait: bool = True) -> None:
        self._executor.shutdown(wait=wait, cancel_futures=not wait)

    # --- internals -----------------------------------------------------------------------
    def _run(self, clone_id: str, work: CloneWork) -> None:
        try:
            sha256, metrics = work(Reporter(self, clone_id))
        except Exception as exc:  # the job fails; the service keeps running
            message = exc.message if isinstance(exc, AivoError) else f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, AivoError):
                log.exception("clone %s failed", clone_id)
            self._update(clone_id, status="failed", message=f"Cloning failed: {message}", error=message)
            return
        self._update(clone_id, status="completed", progress=100, message="Personal tutor ready",
                     adapter_sha256=sha256, metrics=metrics)

    def _update(self, clone_id: str, **changes: object) -> None:
        with self._lock:
            current = self._statuses[clone_id]
            status = replace(current, updated_at=self.clock.now().isoformat(), **changes)
            self._statuses[clone_id] = status
            self._write(status)

    def _path(self, clone_id: str) -> Path:
        if not clone_id.replace("_", "").isalnum():
            raise NotFoundError(f"no clone job {clone_id!r}")
        return self.root / f"{clone_id}.json"

    def _write(self, status: CloneStatus) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.root, suffix=".part")
        with os.fdopen(fd, "w") as fh:
            json.dump(asdict(status), fh)
        os.replace(tmp, self._path(status.clone_id))

    def _read(self, clone_id: str) -> CloneStatus | None:
        path = self._path(clone_id)
        if not path.exists():
            return None
        return CloneStatus(**json.loads(path.read_text()))

    def _recover(self) -> None:
        """Jobs left unfinished by a previous process can never finish: mark them failed."""
        for path in self.root.glob("clone_*.json"):
            try:
                status = CloneStatus(**json.loads(path.read_text()))
            except (ValueError, TypeError):
                continue
            if not status.done:
                failed = replace(status, status="failed", error="interrupted",
                                 message="Cloning was interrupted by a restart; start it again",
                                 updated_at=self.clock.now().isoformat())
                self._write(failed)
