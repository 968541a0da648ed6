"""The training scheduler (the seed design's endpoints): status, manual training triggers, and
run-time schedule changes. Triggers queue a trainer job and return at once (202): training runs in
a worker, never in the request."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from aivo.api.deps import AdminKey, ClockDep, RegistryDep, ServiceKey, SettingsDep
from aivo.api.routers.trainer_jobs import actor, public
from aivo.api.schemas.common import ERROR_RESPONSES, ErrorResponse
from aivo.api.schemas.training import Priority, ScheduleOverridePublic, ScheduleUpdate, TriggerResponse
from aivo.errors import ConflictError
from aivo.services.api_keys import check_learner_access, learner_tenant
from aivo.services.learners import pseudonym_for
from aivo.services.scheduler import scheduler_status, trigger_training, update_schedule
from aivo.training.retraining import RetrainingDecision
from aivo.training.runs import LEARNER_MODEL_PREFIX, MAIN_BRAIN_MODEL_ID

router = APIRouter(tags=["scheduler"])
_TRIGGER_ERRORS = {**ERROR_RESPONSES,
                   404: {"model": ErrorResponse, "description": "Unknown model (or learner)."},
                   409: {"model": ErrorResponse, "description": "Already training, or trained too recently "
                                                                "(without force)."}}
Reason = Annotated[str, Query(max_length=500, description="Why (kept with the job).")]
Force = Annotated[bool, Query(description="Ignore MIN_TRAINING_INTERVAL_HOURS (never starts a model twice).")]


@router.get("/v1/scheduler/status", summary="Scheduler jobs, models training, last training",
            responses=ERROR_RESPONSES)
def status(registry: RegistryDep, settings: SettingsDep, clock: ClockDep, key: ServiceKey) -> dict[str, Any]:
    """Each job with its trigger and next run; models training; the last training per model; which
    process holds the scheduler lease (wherever it runs)."""
    return scheduler_status(registry=registry, settings=settings, clock=clock, tenant=key.tenant)


def _queued(decision: RetrainingDecision, clock) -> TriggerResponse:
    if decision.status != "queued":
        raise ConflictError(decision.reason + (f" (job {decision.job.id})" if decision.job else ""))
    return TriggerResponse(model_id=decision.model_id, reason=decision.reason, job=public(decision.job),
                           timestamp=clock.now())


@router.post("/v1/scheduler/train-main-brain", response_model=TriggerResponse, status_code=202,
             summary="Train the Main Brain now", responses=_TRIGGER_ERRORS)
def train_main_brain(registry: RegistryDep, settings: SettingsDep, clock: ClockDep, key: AdminKey,
                     reason: Reason = "manual", priority: Annotated[Priority, Query()] = "high",
                     force: Force = True) -> TriggerResponse:
    """Queues the continuous-training pipeline (collect, scrub, split, search, train, evaluate, gate).
    Follow it at GET /trainer/jobs/{id}. Admin only."""
    return _queued(trigger_training(registry=registry, settings=settings, model_id=MAIN_BRAIN_MODEL_ID,
                                    reason=reason, priority=priority, force=force, actor=actor(key), clock=clock),
                   clock)


@router.post("/v1/scheduler/trigger/{model_id}", response_model=TriggerResponse, status_code=202,
             summary="Train any model now", responses=_TRIGGER_ERRORS)
def trigger(registry: RegistryDep, settings: SettingsDep, clock: ClockDep, key: AdminKey,
            model_id: Annotated[str, Path(max_length=300, description=(
                f"`{MAIN_BRAIN_MODEL_ID}`, `aivo-federated-aggregation` or `learner:<learner id>` (a learner's "
                "clone; the id is pseudonymized by the server)."))],
            reason: Reason = "manual", priority: Annotated[Priority, Query()] = "normal",
            force: Force = True) -> TriggerResponse:
    """Admin only."""
    if model_id.startswith(LEARNER_MODEL_PREFIX):
        pseudonym = pseudonym_for(settings=settings, learner_id=model_id[len(LEARNER_MODEL_PREFIX):])
        # Another tenant's learner is answered exactly like one that does not exist.
        check_learner_access(key, tenant=learner_tenant(registry=registry, pseudonym=pseudonym), linked=True)
        model_id = LEARNER_MODEL_PREFIX + pseudonym
    return _queued(trigger_training(registry=registry, settings=settings, model_id=model_id, reason=reason,
                                    priority=priority, force=force, actor=actor(key), clock=clock), clock)


@router.put("/v1/scheduler/jobs/{job_id}", response_model=ScheduleOverridePublic, summary="Change a schedule",
            responses={**ERROR_RESPONSES, 422: {"model": ErrorResponse, "description": "Invalid cron or interval."}})
def change_schedule(body: ScheduleUpdate, registry: RegistryDep, settings: SettingsDep, clock: ClockDep,
                    key: AdminKey, job_id: Annotated[str, Path(description="e.g. aivo_main_brain_daily")]
                    ) -> ScheduleOverridePublic:
    """A cron expression or an interval, or enable/disable; validated before anything is written.
    The running scheduler applies it within a lease renewal (seconds). Admin only."""
    record = update_schedule(registry=registry, settings=settings, job_id=job_id, cron=body.cron,
                             interval_hours=body.interval_hours, enabled=body.enabled, reset=body.reset,
                             actor=actor(key), clock=clock)
    if record is None:
        return ScheduleOverridePublic(job_id=job_id, trigger={}, enabled=True, reset=True)
    return ScheduleOverridePublic(job_id=record.job_id, trigger=record.trigger, enabled=record.enabled)
