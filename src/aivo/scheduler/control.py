"""Scheduler front doors for the API and the CLI that work from any process: the status is read
from the database (lease, runs, jobs) and the settings, not from a live scheduler object, so any
API worker can answer while the scheduler runs elsewhere (`aivo scheduler run`).

    scheduler_status(...)   GET /v1/scheduler/status, aivo scheduler status
    trigger_training(...)   POST /v1/scheduler/train-main-brain, POST /v1/scheduler/trigger/{model_id}
    update_schedule(...)    PUT /v1/scheduler/jobs/{job_id}
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
from aivo.scheduler.triggers import (
    JOB_SPECS,
    build_triggers,
    job_spec,
    next_fire_time,
    resolve_timezone,
    trigger_from_override,
)
from aivo.training.jobs import models_training
from aivo.training.leases import get_lease
from aivo.training.retraining import RetrainingDecision, schedule_retraining
from aivo.training.runs import MAIN_BRAIN_MODEL_ID, last_training

LEASE_NAME = "scheduler"


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
