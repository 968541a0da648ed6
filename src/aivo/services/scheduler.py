"""Scheduler use cases: what each scheduled job does, the scheduler of this process, and the
front doors for the API and the CLI.

    scheduled_actions(...)  job id -> the use case its firing calls
    make_scheduler(...)     a TrainingScheduler with those actions (and, embedded, a worker thread)
    start_scheduler(...)    the same, started: `aivo serve` with one worker, `aivo scheduler run`
    scheduler_status(...)   GET /v1/scheduler/status, aivo scheduler status
    trigger_training(...)   POST /v1/scheduler/train-main-brain, POST /v1/scheduler/trigger/{model_id}
    update_schedule(...)    PUT /v1/scheduler/jobs/{job_id}

The status is read from the database (lease, runs, jobs) and the settings, not from a live
scheduler object, so any API worker can answer while the scheduler runs elsewhere.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.config import Settings
from aivo.errors import DataError
from aivo.registry import Registry
from aivo.scheduler.records import (
    OverrideRecord,
    claim_firing,
    delete_override,
    finish_firing,
    get_overrides,
    last_runs,
    set_override,
)
from aivo.scheduler.runner import LEASE_NAME, Action, TrainingScheduler
from aivo.scheduler.triggers import (
    JOB_SPECS,
    build_triggers,
    job_spec,
    next_fire_time,
    resolve_timezone,
    trigger_from_override,
)
from aivo.services.adaptive import run_adaptive_check
from aivo.services.drift import check_drift
from aivo.services.jobs import start_worker_thread
from aivo.training.jobs import models_training
from aivo.training.leases import get_lease
from aivo.training.retraining import RetrainingDecision, schedule_retraining, weekly_full_retraining
from aivo.training.runs import FEDERATED_MODEL_ID, MAIN_BRAIN_MODEL_ID, last_training

SKIPPED_DECISIONS = ("already_training", "too_soon")


def scheduled_actions(*, registry: Registry, settings: Settings, clock: Clock) -> dict[str, Action]:
    """job id -> the use case its firing calls. Thin on purpose: no logic of their own."""
    def retrain(model_id: str, reason: str, priority: str) -> Action:
        def action(forced: bool) -> dict[str, Any]:
            decision = schedule_retraining(registry=registry, settings=settings, model_id=model_id, reason=reason,
                                           priority=priority, force=forced, clock=clock)
            status = "skipped" if decision.status in SKIPPED_DECISIONS else "succeeded"
            return {"status": status, "decision": decision.status, "reason": decision.reason,
                    "job_id": decision.job.id if decision.job else None}
        return action

    def drift(forced: bool) -> dict[str, Any]:
        report = check_drift(registry=registry, settings=settings, clock=clock)
        return {"status": "succeeded", "report_id": report.id, "model_id": report.model_id,
                "version": report.version, "drift_score": report.score, "drifted": report.drifted,
                "action": report.action}

    def weekly(forced: bool) -> dict[str, Any]:
        decisions = weekly_full_retraining(registry=registry, settings=settings, clock=clock)
        queued = [d.model_id for d in decisions if d.status == "queued"]
        return {"status": "succeeded" if queued else "skipped", "queued": queued,
                "decisions": [{"model_id": d.model_id, "status": d.status, "reason": d.reason,
                               "job_id": d.job.id if d.job else None} for d in decisions]}

    def adaptive(forced: bool) -> dict[str, Any]:
        result = run_adaptive_check(registry=registry, settings=settings, clock=clock)
        return {"status": "succeeded", **result.to_dict()}

    return {
        "aivo_main_brain_daily": retrain(MAIN_BRAIN_MODEL_ID, "daily_scheduled_training", "high"),
        "drift_monitor": drift,
        "weekly_full_retraining": weekly,
        "adaptive_training_check": adaptive,
        "federated_aggregation_weekly": retrain(FEDERATED_MODEL_ID, "weekly_federated_aggregation", "normal"),
    }


def make_scheduler(*, registry: Registry, settings: Settings, clock: Clock = SYSTEM_CLOCK,
                   instance_id: str | None = None, run_worker: bool = False,
                   catch_up_s: float = 3600.0) -> TrainingScheduler:
    """A scheduler whose firings call `scheduled_actions`; with `run_worker`, it also runs one
    trainer worker thread (every job kind) while it runs."""
    def worker():
        return start_worker_thread(registry=registry, settings=settings, clock=clock)

    return TrainingScheduler(registry=registry, settings=settings, clock=clock, instance_id=instance_id,
                             actions=scheduled_actions(registry=registry, settings=settings, clock=clock),
                             start_worker=worker if run_worker else None, catch_up_s=catch_up_s)


def start_scheduler(*, registry: Registry, settings: Settings, clock: Clock = SYSTEM_CLOCK,
                    run_worker: bool | None = None) -> TrainingScheduler:
    """Start a scheduler in this process (for `aivo serve` with one worker). Call `.stop()` on shutdown.
    `run_worker` (default: in embedded mode, i.e. SQLite) also runs one trainer worker thread, so
    that an embedded deployment trains without a separate `aivo worker run`."""
    if run_worker is None:
        run_worker = settings.is_embedded
    return make_scheduler(registry=registry, settings=settings, clock=clock, run_worker=run_worker).start()


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


ALL_TENANTS = "*"


def scheduler_status(*, registry: Registry, settings: Settings, clock: Clock = SYSTEM_CLOCK,
                     tenant: str | None = ALL_TENANTS) -> dict[str, Any]:
    """The seed design's status document: jobs with next run and trigger, models training, last
    training per model, plus who holds the scheduler lease and each job's last run.

    `tenant` scopes what is said about learner models (whose ids carry a learner pseudonym):
    `ALL_TENANTS` (the operator's CLI) lists every one; a tenant lists only its own learners' jobs;
    None (unauthenticated callers such as /health) lists none. Main Brain entries are always listed;
    `learner_models_training` counts the learner jobs that were left out."""
    now = clock.now()

    def read(session):
        return (get_lease(session=session, name=LEASE_NAME), get_overrides(session=session),
                last_runs(session=session), models_training(session=session), last_training(session=session))

    lease, overrides, runs, training, trained = registry.run(read, read_only=True)
    if tenant != ALL_TENANTS:
        shown = [j for j in training if j.learner_id is None or (tenant is not None and j.tenant == tenant)]
        hidden = len(training) - len(shown)
        training = shown
        trained = {model: at for model, at in trained.items() if not model.startswith("learner:")}
    else:
        hidden = 0
    triggers = build_triggers(settings, {k: o.trigger for k, o in overrides.items() if o.trigger})
    running = lease is not None and lease.expires_at > now
    jobs = []
    for spec in JOB_SPECS:
        override = overrides.get(spec.id)
        enabled = override.enabled if override is not None else True
        last = runs.get(spec.id)
        jobs.append({
            "id": spec.id, "name": spec.name, "trigger": str(triggers[spec.id]),
            "next_run": _iso(next_fire_time(triggers[spec.id], now=now)) if enabled else None,
            "enabled": enabled, "configured_by": "override" if override is not None and override.trigger
            else spec.setting,
            "last_run": None if last is None else {"scheduled_for": _iso(last.scheduled_for), "status": last.status,
                                                   "finished_at": _iso(last.finished_at), "error": last.error},
        })
    return {
        "scheduler": {
            "running": running,
            "enabled": settings.scheduler_enabled,
            "leader": lease.owner if running else None,
            "lease_expires_at": _iso(lease.expires_at) if lease is not None else None,
            "timezone": settings.timezone,
            "jobs": jobs,
            "models_training": [{"model_id": j.model_id, "job_id": j.id, "status": j.status, "kind": j.kind}
                                for j in training],
            "learner_models_training": hidden,
            "last_training": {model: _iso(at) for model, at in sorted(trained.items())},
        },
        "timestamp": _iso(now),
    }


def trigger_training(*, registry: Registry, settings: Settings, model_id: str = MAIN_BRAIN_MODEL_ID,
                     reason: str = "manual", priority: str = "high", force: bool = True, actor: str = "api",
                     clock: Clock = SYSTEM_CLOCK) -> RetrainingDecision:
    """Queue training of `model_id` now (a worker runs it; nothing trains in the caller). Manual
    triggers are forced past MIN_TRAINING_INTERVAL_HOURS by default; a model already training is
    never started twice. The trigger is recorded as a scheduler run `manual:<model_id>`."""
    now = clock.now()
    job_name = f"manual:{model_id}"[:64]
    run_id = None
    for offset in range(100):  # two manual triggers in the same microsecond are two runs, not one
        at = now + timedelta(microseconds=offset)
        run_id = registry.run(lambda s: claim_firing(session=s, job_name=job_name, scheduled_for=at,
                                                     instance_id=f"manual:{actor}"[:128], forced=force, clock=clock))
        if run_id is not None:
            break
    try:
        decision = schedule_retraining(registry=registry, settings=settings, model_id=model_id,
                                       reason=reason or "manual", priority=priority, force=force, created_by=actor,
                                       clock=clock)
    except Exception as exc:
        if run_id is not None:
            message = getattr(exc, "message", f"{type(exc).__name__}: {exc}")
            registry.run(lambda s: finish_firing(session=s, run_id=run_id, status="failed", error=message, clock=clock))
        raise
    if run_id is not None:
        status = "succeeded" if decision.status == "queued" else "skipped"
        registry.run(lambda s: finish_firing(session=s, run_id=run_id, status=status, clock=clock, outcome={
            "decision": decision.status, "reason": decision.reason, "job_id": decision.job.id if decision.job else None}))
    return decision


def update_schedule(*, registry: Registry, settings: Settings, job_id: str, cron: str | None = None,
                    interval_hours: float | None = None, enabled: bool | None = None, reset: bool = False,
                    actor: str, clock: Clock = SYSTEM_CLOCK) -> OverrideRecord | None:
    """Change a job's schedule at run time (validated first: nothing is written on a bad cron).
    `reset` removes the override (back to the settings). The running scheduler applies it at its
    next lease renewal."""
    job_spec(job_id)
    if reset:
        registry.run(lambda s: delete_override(session=s, job_id=job_id))
        return None
    if cron is not None and interval_hours is not None:
        raise DataError("give either cron or interval_hours, not both")
    trigger: dict[str, Any] = {}
    if cron is not None:
        trigger = {"cron": cron}
    elif interval_hours is not None:
        trigger = {"interval_hours": interval_hours}
    if trigger:
        trigger_from_override(trigger, timezone=resolve_timezone(settings.timezone), job_id=job_id)
    elif enabled is None:
        raise DataError("nothing to change: give cron, interval_hours, enabled or reset")

    def work(session) -> OverrideRecord:
        current = get_overrides(session=session).get(job_id)
        kept = trigger or (current.trigger if current is not None else {})
        keep_enabled = enabled if enabled is not None else (current.enabled if current is not None else True)
        return set_override(session=session, job_id=job_id, trigger=kept, enabled=keep_enabled, updated_by=actor,
                            clock=clock)

    return registry.run(work)
