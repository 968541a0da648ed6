"""Trainer workers: claim a job, hold its lease by heartbeat, run it, record its fate.

`aivo worker run` runs `Worker.run_forever` in its own process (as many processes as wanted,
on any machine that reaches the database). Embedded mode may run one in a background thread of
`aivo scheduler run` or `aivo serve` (`WorkerThread`): training still never runs in a request.
A worker runs the kinds it is given (`aivo.services.jobs.JOB_KINDS` builds them).

Fates:
- the kind returns -> `succeeded` (result, candidate, evaluation stored);
- `AivoError` (a data or configuration problem) or any other exception -> `failed`, message kept;
- cancelled (DELETE /trainer/jobs/{id}) -> the heartbeat sees the flag within
  `heartbeat_s` seconds, training stops at its next batch -> `cancelled`;
- the worker shuts down (SIGTERM/SIGINT) -> the job stops and goes back to `queued` (a restart
  loses nothing; the rerun starts from scratch, it is not a second run of a finished job);
- the worker dies -> its lease expires and the reaper (run by every worker and the scheduler)
  marks the job `failed` ("lease expired"), or requeues it while `max_attempts` allows.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable

from aivo.brain.train import TrainingStopped
from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.config import Settings
from aivo.errors import AivoError
from aivo.registry import Registry
from aivo.training.context import JobContext
from aivo.training.jobs import TrainerJobRecord, get_job
from aivo.training.kinds import JobKinds
from aivo.training.leases import claim_job, claim_next_job, finish_job, heartbeat, reap_expired_jobs, set_job_status

log = logging.getLogger(__name__)
MAX_HEARTBEAT_S = 2.0  # also the cancellation latency: a cancelled job stops within about this long


def make_worker_id(prefix: str = "worker") -> str:
    return f"{prefix}:{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def reap(*, registry: Registry, clock: Clock = SYSTEM_CLOCK) -> list[TrainerJobRecord]:
    return registry.run(lambda session: reap_expired_jobs(session=session, clock=clock))


class Worker:
    """Runs the jobs of `job_kinds` (only those named in `kinds`, when given)."""

    def __init__(self, *, registry: Registry, settings: Settings, job_kinds: JobKinds, clock: Clock = SYSTEM_CLOCK,
                 worker_id: str | None = None, kinds: tuple[str, ...] | None = None, poll_s: float = 1.0,
                 heartbeat_s: float | None = None):
        unknown = sorted(set(kinds or ()) - set(job_kinds.names()))
        if unknown:
            job_kinds.get(unknown[0])  # DataError naming the unknown kind and the known ones
        self.registry = registry
        self.settings = settings
        self.job_kinds = job_kinds
        self.clock = clock
        self.worker_id = worker_id or make_worker_id()
        self.kinds = kinds
        self.poll_s = poll_s
        self.lease_s = settings.job_lease_s
        self.heartbeat_s = heartbeat_s or min(MAX_HEARTBEAT_S, self.lease_s / 3)
        self._shutdown = threading.Event()
        self._current: JobContext | None = None

    # --- control -----------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop after (or, when running, during) the current job; that job is requeued."""
        self._shutdown.set()
        current = self._current
        if current is not None:
            current.request_stop("shutdown")

    @property
    def stopping(self) -> bool:
        return self._shutdown.is_set()

    # --- the loop ----------------------------------------------------------------------------
    def claimable_kinds(self) -> tuple[str, ...]:
        return tuple(k for k in self.job_kinds.names() if self.kinds is None or k in self.kinds)

    def claim(self) -> TrainerJobRecord | None:
        kinds = self.claimable_kinds()
        if not kinds:
            return None
        return self.registry.run(lambda session: claim_next_job(session=session, worker_id=self.worker_id,
                                                                lease_s=self.lease_s, kinds=kinds, clock=self.clock))

    def run_once(self) -> TrainerJobRecord | None:
        """Reap expired leases, claim one job and run it to its end. None when nothing was queued."""
        reap(registry=self.registry, clock=self.clock)
        job = self.claim()
        if job is None:
            return None
        return self.execute(job)

    def run_job(self, job_id: int) -> TrainerJobRecord | None:
        """Claim job `job_id` and run it to its end (a command that runs the job it just queued).
        None when it is no longer queued (another worker has it) or not of a kind this worker runs."""
        job = self.registry.run(lambda session: claim_job(session=session, job_id=job_id, worker_id=self.worker_id,
                                                          lease_s=self.lease_s, kinds=self.claimable_kinds(),
                                                          clock=self.clock))
        return None if job is None else self.execute(job)

    def run_forever(self, *, max_jobs: int | None = None, exit_when_idle: bool = False,
                    on_job: Callable[[TrainerJobRecord], None] | None = None) -> int:
        """Process jobs until `shutdown()` (or `max_jobs` jobs, or an empty queue with `exit_when_idle`)."""
        done = 0
        log.info("worker %s started (kinds: %s, lease %.0fs)", self.worker_id, ", ".join(self.claimable_kinds()),
                 self.lease_s)
        while not self._shutdown.is_set():
            finished = self.run_once()
            if finished is None:
                if exit_when_idle:
                    break
                self._shutdown.wait(self.poll_s)
                continue
            done += 1
            if on_job is not None:
                on_job(finished)
            if max_jobs is not None and done >= max_jobs:
                break
        log.info("worker %s stopped after %d job(s)", self.worker_id, done)
        return done

    # --- one job -----------------------------------------------------------------------------
    def execute(self, job: TrainerJobRecord) -> TrainerJobRecord:
        ctx = JobContext(job=job, registry=self.registry, settings=self.settings, worker_id=self.worker_id,
                         clock=self.clock)
        self._current = ctx
        if self._shutdown.is_set():
            ctx.request_stop("shutdown")
        beat_stop = threading.Event()
        beat = threading.Thread(target=self._beat, args=(ctx, beat_stop), name=f"heartbeat-{job.id}", daemon=True)
        beat.start()
        log.info("job %d (%s, %s) claimed by %s", job.id, job.kind, job.model_id, self.worker_id)
        try:
            self._run(ctx)
        finally:
            beat_stop.set()
            beat.join()
            self._current = None
        return self.registry.run(lambda session: get_job(session=session, job_id=job.id), read_only=True)

    def _finish(self, ctx: JobContext, **values) -> bool:
        # The job's log (its progress messages) outlives the run, with its last line saying how it ended.
        ending = values.get("error") or values["status"]
        ctx.report(values["status"], ctx.progress.get("fraction"), f"{values['status']}: {ending}"
                   if ending != values["status"] else values["status"])
        log_lines = ctx.progress.get("log")
        return self.registry.run(lambda session: finish_job(session=session, job_id=ctx.job.id,
                                                            worker_id=self.worker_id, clock=self.clock,
                                                            log_lines=log_lines, **values))

    def _run(self, ctx: JobContext) -> None:
        job = ctx.job
        started = time.perf_counter()
        try:
            kind = self.job_kinds.get(job.kind)
            checks = kind.validate(ctx)
            if ctx.should_stop():
                raise TrainingStopped("stopped while validating")
            ctx.report("running", 0.01, "validated" + (f": {checks}" if checks else ""))
            if not self.registry.run(lambda s: set_job_status(session=s, job_id=job.id, worker_id=self.worker_id,
                                                              status="running", progress=ctx.progress,
                                                              clock=self.clock)):
                ctx.request_stop("lease_lost")
                raise TrainingStopped("lease lost before running")
            outcome = kind.run(ctx)
            if ctx.stop_reason is not None:  # stopped after the kind's last check: do not claim success
                raise TrainingStopped(f"stopped ({ctx.stop_reason})")
            result = {**outcome.result, "validation": checks, "seconds": round(time.perf_counter() - started, 2)}
            self._finish(ctx, status="succeeded", result=result, **outcome.fields())
            log.info("job %d succeeded in %.1fs", job.id, time.perf_counter() - started)
        except TrainingStopped as exc:
            reason = ctx.stop_reason or "cancelled"
            if reason == "shutdown":
                self._finish(ctx, status="queued", requeue=True, error=f"worker {self.worker_id} shut down: {exc}")
                log.info("job %d requeued: worker shutting down", job.id)
            elif reason == "cancelled":
                self._finish(ctx, status="cancelled", error="cancelled on request")
                log.info("job %d cancelled", job.id)
            else:
                log.warning("job %d: lease lost, abandoning it (%s)", job.id, exc)
        except AivoError as exc:
            self._finish(ctx, status="failed", error=exc.message)
            log.warning("job %d failed: %s", job.id, exc.message)
        except Exception as exc:  # a bug or an environment problem: keep the traceback in the log
            log.exception("job %d crashed", job.id)
            self._finish(ctx, status="failed", error=f"{type(exc).__name__}: {exc}")

    def _beat(self, ctx: JobContext, stop: threading.Event) -> None:
        while not stop.wait(self.heartbeat_s):
            try:
                beat = self.registry.run(lambda session: heartbeat(session=session, job_id=ctx.job.id,
                                                                   worker_id=self.worker_id, lease_s=self.lease_s,
                                                                   progress=ctx.progress, clock=self.clock))
            except Exception:  # a database hiccup: try again at the next beat; the lease has slack
                log.warning("job %d: heartbeat failed", ctx.job.id, exc_info=True)
                continue
            if not beat.owned:
                ctx.request_stop("lease_lost")
            elif beat.cancel_requested:
                ctx.request_stop("cancelled")


class WorkerThread:
    """An in-process worker for embedded mode (one background thread)."""

    def __init__(self, worker: Worker):
        self.worker = worker
        self.thread = threading.Thread(target=worker.run_forever, name="aivo-worker", daemon=True)

    def start(self) -> "WorkerThread":
        self.thread.start()
        return self

    def stop(self, *, timeout: float = 30.0) -> None:
        self.worker.shutdown()
        self.thread.join(timeout)
