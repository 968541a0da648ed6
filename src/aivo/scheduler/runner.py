"""`TrainingScheduler`: APScheduler 3 (BackgroundScheduler) plus the guarantees AIVO needs.

Exactly one scheduler acts at a time. Every process that runs one (`aivo scheduler run`, or
`aivo serve` with a single worker) competes for the `scheduler` lease row; the holder renews it
every third of its time-to-live (AIVO_JOB_LEASE_S) and runs the jobs, the others stand by with
their APScheduler paused and take over when the lease expires. Independently of the lease, a
firing is recorded as a unique (job, scheduled time) row before it runs, so even two processes
that both believe they lead (a stalled leader waking up after its lease expired) cannot run the
same firing twice.

What a firing does is an `Action` the caller hands in (`aivo.services.scheduler` maps each job
id to its use case: retraining, drift, the adaptive check): the scheduler only decides *when*,
records the run, and calls it. Missed firings (the process was down at
02:00) are caught up when a process becomes leader if they are at most `catch_up_s` old (default
one hour); older ones are skipped, not run at an unexpected time of day.

Run-time overrides (`PUT /v1/scheduler/jobs/{id}`) are read at every lease renewal and applied
without a restart. In-memory job store on purpose: the jobs come from Settings and overrides, so
nothing pickled can go stale, and the run history is in `scheduler_runs`.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.config import Settings
from aivo.errors import AivoError, NotFoundError
from aivo.registry import Registry
from aivo.scheduler.records import SchedulerRunRecord, claim_firing, finish_firing, get_overrides, has_firing
from aivo.scheduler.triggers import JOB_SPECS, build_triggers, latest_fire_time, resolve_timezone
from aivo.scheduler.triggers import trigger_from_override
from aivo.training.leases import acquire_lease, release_lease
from aivo.training.worker import WorkerThread, reap

log = logging.getLogger(__name__)
LEASE_NAME = "scheduler"

Action = Callable[[bool], dict[str, Any]]  # forced -> outcome (with "status": succeeded | skipped)


def run_firing(*, registry: Registry, job_id: str, action: Action, scheduled_for: datetime, instance_id: str,
               forced: bool = False, clock: Clock = SYSTEM_CLOCK) -> SchedulerRunRecord | None:
    """Run one firing once: claim its row, call the action, record the outcome. None when another
    process already took this firing."""
    run_id = registry.run(lambda s: claim_firing(session=s, job_name=job_id, scheduled_for=scheduled_for,
                                                 instance_id=instance_id, forced=forced, clock=clock))
    if run_id is None:
        log.info("%s @ %s already taken (by another scheduler process or thread)", job_id, scheduled_for.isoformat())
        return None
    status, outcome, error = "failed", {}, None
    try:
        outcome = action(forced)
        status = outcome.pop("status", "succeeded")
    except NotFoundError as exc:  # e.g. no active Main Brain yet: nothing to check
        status, error = "skipped", exc.message
    except AivoError as exc:
        error = exc.message
    except Exception as exc:  # keep the scheduler alive; the traceback goes to the log
        log.exception("scheduled job %s failed", job_id)
        error = f"{type(exc).__name__}: {exc}"
    record = registry.run(lambda s: finish_firing(session=s, run_id=run_id, status=status, outcome=outcome,
                                                  error=error, clock=clock))
    log.info("%s @ %s: %s%s", job_id, scheduled_for.isoformat(), status, f" ({error})" if error else "")
    return record


class TrainingScheduler:
    """`actions`: job id -> what its firing does. `start_worker`: when given, starts a trainer
    worker thread with the scheduler (embedded mode), stopped with it."""

    def __init__(self, *, registry: Registry, settings: Settings, actions: dict[str, Action],
                 clock: Clock = SYSTEM_CLOCK, instance_id: str | None = None,
                 start_worker: Callable[[], WorkerThread] | None = None, catch_up_s: float = 3600.0):
        self.registry = registry
        self.settings = settings
        self.clock = clock
        self.instance_id = instance_id or f"scheduler:{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.lease_ttl_s = settings.job_lease_s
        self.catch_up = timedelta(seconds=catch_up_s)
        self.timezone = resolve_timezone(settings.timezone)
        self.triggers = build_triggers(settings)  # ConfigError on a bad schedule: refuse to start
        missing = sorted({spec.id for spec in JOB_SPECS} - set(actions))
        if missing:
            raise ValueError(f"no action for scheduler job(s): {', '.join(missing)}")
        self.actions = actions
        self._start_worker = start_worker
        self._overrides_seen: dict[str, tuple] = {}
        self._disabled: set[str] = set()
        self._leader = False
        self._stop = threading.Event()
        self._lease_thread: threading.Thread | None = None
        self._worker: WorkerThread | None = None
        self._aps = BackgroundScheduler(timezone=self.timezone, job_defaults={
            "coalesce": True, "max_instances": 1, "misfire_grace_time": int(catch_up_s)})

    # --- lifecycle -------------------------------------------------------------------------
    @property
    def is_leader(self) -> bool:
        return self._leader

    @property
    def running(self) -> bool:
        return self._lease_thread is not None and self._lease_thread.is_alive()

    def start(self) -> "TrainingScheduler":
        for spec in JOB_SPECS:
            self._aps.add_job(self.fire, self.triggers[spec.id], args=[spec.id], id=spec.id, name=spec.name,
                              replace_existing=True)
        self._aps.start(paused=True)
        self._lease_thread = threading.Thread(target=self._lease_loop, name="aivo-scheduler-lease", daemon=True)
        self._lease_thread.start()
        if self._start_worker is not None:
            self._worker = self._start_worker()
        log.info("scheduler %s started (timezone %s); waiting for the scheduler lease", self.instance_id,
                 self.settings.timezone)
        return self

    def stop(self, *, wait: bool = True) -> None:
        self._stop.set()
        if self._lease_thread is not None:
            self._lease_thread.join(timeout=10)
        try:
            self._aps.shutdown(wait=wait)
        except Exception:  # already stopped
            pass
        if self._worker is not None:
            self._worker.stop()
        if self._leader:
            self.registry.run(lambda s: release_lease(session=s, name=LEASE_NAME, owner=self.instance_id))
            self._leader = False
        log.info("scheduler %s stopped", self.instance_id)

    # --- firing ----------------------------------------------------------------------------
    def fire(self, job_id: str) -> SchedulerRunRecord | None:
        """APScheduler's callback: run the firing that is due now, if this process leads."""
        if not self._leader or job_id in self._disabled:
            return None
        scheduled_for = latest_fire_time(self.triggers[job_id], now=self.clock.now())
        if scheduled_for is None:
            return None
        return run_firing(registry=self.registry, job_id=job_id, action=self.actions[job_id],
                          scheduled_for=scheduled_for, instance_id=self.instance_id, clock=self.clock)

    def run_now(self, job_id: str, *, forced: bool = True) -> SchedulerRunRecord | None:
        """Run a job outside its schedule (manual trigger), recorded at the current time."""
        return run_firing(registry=self.registry, job_id=job_id, action=self.actions[job_id],
                          scheduled_for=self.clock.now(), instance_id=self.instance_id, forced=forced, clock=self.clock)

    def catch_up_missed(self) -> list[SchedulerRunRecord]:
        """Run each job's latest firing if it was missed (no row) and is at most `catch_up_s` old."""
        now = self.clock.now()
        done = []
        for spec in JOB_SPECS:
            if spec.id in self._disabled:
                continue
            due = latest_fire_time(self.triggers[spec.id], now=now)
            if due is None or now - due > self.catch_up:
                continue
            if self.registry.run(lambda s: has_firing(session=s, job_name=spec.id, scheduled_for=due), read_only=True):
                continue
            log.info("catching up %s due at %s", spec.id, due.isoformat())
            record = run_firing(registry=self.registry, job_id=spec.id, action=self.actions[spec.id],
                                scheduled_for=due, instance_id=self.instance_id, clock=self.clock)
            if record is not None:
                done.append(record)
        return done

    # --- leadership and overrides ------------------------------------------------------------
    def tick(self) -> bool:
        """One lease renewal (the lease thread calls it every third of the TTL). Returns leadership."""
        held = self.registry.run(lambda s: acquire_lease(session=s, name=LEASE_NAME, owner=self.instance_id,
                                                         ttl_s=self.lease_ttl_s,
                                                         details={"host": socket.gethostname(), "pid": os.getpid()},
                                                         clock=self.clock))
        self.apply_overrides()
        if held and not self._leader:
            self._leader = True
            log.info("scheduler %s is now the leader", self.instance_id)
            if self._aps.running:
                self._aps.resume()
            self.catch_up_missed()
        elif not held and self._leader:
            self._leader = False
            log.warning("scheduler %s lost the lease; standing by", self.instance_id)
            if self._aps.running:
                self._aps.pause()
        if self._leader:
            reap(registry=self.registry, clock=self.clock)
        return self._leader

    def apply_overrides(self) -> None:
        overrides = self.registry.run(lambda s: get_overrides(session=s), read_only=True)
        for spec in JOB_SPECS:
            override = overrides.get(spec.id)
            key = (tuple(sorted(override.trigger.items())), override.enabled) if override else None
            if self._overrides_seen.get(spec.id) == key:
                continue
            self._overrides_seen[spec.id] = key
            base = build_triggers(self.settings)[spec.id]
            trigger = base
            if override is not None and override.trigger:
                trigger = trigger_from_override(override.trigger, timezone=self.timezone, job_id=spec.id)
            self.triggers[spec.id] = trigger
            if self._aps.get_job(spec.id) is not None:
                self._aps.reschedule_job(spec.id, trigger=trigger)
            if override is not None and not override.enabled:
                self._disabled.add(spec.id)
                if self._aps.get_job(spec.id) is not None:
                    self._aps.pause_job(spec.id)
            else:
                self._disabled.discard(spec.id)
            if override is not None:
                log.info("schedule of %s: %s (%s)", spec.id, trigger, "enabled" if spec.id not in self._disabled
                         else "disabled")

    def _lease_loop(self) -> None:
        interval = max(0.2, self.lease_ttl_s / 3)
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # a database hiccup: keep trying; leadership lapses with the lease
                log.warning("scheduler lease renewal failed", exc_info=True)
            self._stop.wait(interval)

    def jobs(self) -> list[dict[str, Any]]:
        out = []
        for spec in JOB_SPECS:
            job = self._aps.get_job(spec.id)
            next_run = getattr(job, "next_run_time", None) if job is not None else None
            out.append({"id": spec.id, "name": spec.name, "trigger": str(self.triggers[spec.id]),
                        "next_run": next_run.isoformat() if next_run else None,
                        "enabled": spec.id not in self._disabled})
        return out
