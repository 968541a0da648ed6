"""Trainer jobs (the seed design's model-trainer service): create, read, list, cancel, evaluate,
promote. Nothing here trains or evaluates: jobs are rows that workers run (`aivo worker run`, or
the embedded worker of `aivo serve`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, Path, Query, Response

from aivo.api.deps import AdminKey, ClockDep, RegistryDep, ServiceKey, SettingsDep
from aivo.api.schemas.common import ERROR_RESPONSES, MAX_INT32, MAX_OFFSET, ErrorResponse
from aivo.api.schemas.training import (
    EvaluateCreate,
    EvaluationPublic,
    PromoteJobCreate,
    TrainerJobCreate,
    TrainerJobPage,
    TrainerJobPublic,
)
from aivo.errors import NotFoundError
from aivo.registry.api_keys import VerifiedKey
from aivo.services import jobs as job_service
from aivo.services import models
from aivo.services.learners import pseudonym_for
from aivo.training.jobs import JOB_STATUSES, TrainerJobRecord

router = APIRouter(tags=["trainer"])
JobId = Annotated[int, Path(ge=1, le=MAX_INT32, description="The trainer job's id.")]
_NOT_FOUND = {404: {"model": ErrorResponse, "description": "No such job (in this key's tenant)."}}
_CONFLICT = {409: {"model": ErrorResponse, "description": "Not possible in the job's current state."}}
_INVALID = {422: {"model": ErrorResponse, "description": "Missing or incomplete datasheet, bad config or policy."}}


def public(job: TrainerJobRecord) -> TrainerJobPublic:
    return TrainerJobPublic(**job.to_dict())


def actor(key: VerifiedKey) -> str:
    return f"apikey:{key.key_id}"


def _visible(job: TrainerJobRecord, key: VerifiedKey) -> TrainerJobRecord:
    """A key sees its tenant's jobs and the Main Brain's (no tenant). Admins too: an admin key
    administers its own tenant, never another tenant's learners."""
    if job.tenant not in (None, key.tenant):
        raise NotFoundError(f"trainer job {job.id} does not exist")
    return job


def _job(registry, job_id: int, key: VerifiedKey) -> TrainerJobRecord:
    return _visible(job_service.fetch_job(registry=registry, job_id=job_id), key)


@router.post("/trainer/jobs", response_model=TrainerJobPublic, status_code=202, summary="Queue a trainer job",
             responses={**ERROR_RESPONSES, **_INVALID, **_CONFLICT})
def create_job(body: TrainerJobCreate, registry: RegistryDep, settings: SettingsDep, clock: ClockDep,
               key: AdminKey) -> TrainerJobPublic:
    """Validated now (datasheet, config, thresholds), run later by a worker. 409 when the model
    already has an open job. Admin only."""
    learner = pseudonym_for(settings=settings, learner_id=body.learner_id) if body.learner_id else None
    job = job_service.submit_job(registry=registry, settings=settings, kind=body.kind,
                                 datasheet=body.datasheet.model_dump(exclude_none=True), created_by=actor(key),
                                 config=body.config, policy=body.policy, priority=body.priority, reason=body.reason,
                                 learner_pseudonym=learner, tenant=key.tenant if learner else None,
                                 max_attempts=body.max_attempts, clock=clock)
    return public(job)


@router.get("/trainer/jobs", response_model=TrainerJobPage, summary="List trainer jobs, newest first",
            responses={**ERROR_RESPONSES, **_INVALID})
def list_jobs(registry: RegistryDep, key: ServiceKey,
              status: Annotated[Literal[JOB_STATUSES] | None, Query()] = None,
              model: Annotated[str | None, Query(description="A model id, e.g. aivo-main-brain.")] = None,
              kind: Annotated[str | None, Query()] = None,
              limit: Annotated[int, Query(ge=1, le=500)] = 50,
              offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0) -> TrainerJobPage:
    page = job_service.find_jobs(registry=registry, status=status, model_id=model, kind=kind,
                                 visible_to_tenant=key.tenant,
                                 limit=limit, offset=offset)
    return TrainerJobPage(jobs=[public(j) for j in page.jobs], total=page.total, limit=page.limit,
                          offset=page.offset)


@router.get("/trainer/jobs/{job_id}", response_model=TrainerJobPublic, summary="A trainer job",
            responses={**ERROR_RESPONSES, **_NOT_FOUND})
def get_job(job_id: JobId, registry: RegistryDep, key: ServiceKey) -> TrainerJobPublic:
    """Status, progress (stage, fraction), lease, result, candidate, evaluation, promotion."""
    return public(_job(registry, job_id, key))


@router.delete("/trainer/jobs/{job_id}", response_model=TrainerJobPublic, summary="Cancel a trainer job",
               responses={**ERROR_RESPONSES, **_NOT_FOUND, **_CONFLICT,
                          202: {"model": TrainerJobPublic, "description": "Running: asked to stop."}})
def cancel_job(job_id: JobId, response: Response, registry: RegistryDep, clock: ClockDep,
               key: AdminKey) -> TrainerJobPublic:
    """A queued job is cancelled at once (200). A running one is asked to stop (202): its worker
    sees the request within about two seconds and stops at the next training batch. Admin only."""
    _job(registry, job_id, key)
    job = job_service.cancel(registry=registry, job_id=job_id, clock=clock)
    if job.status != "cancelled":
        response.status_code = 202
    return public(job)


@router.post("/trainer/jobs/{job_id}/evaluate", response_model=EvaluationPublic, status_code=202,
             summary="Run the evaluation harness on a job's candidate",
             responses={**ERROR_RESPONSES, **_NOT_FOUND, **_CONFLICT, **_INVALID})
def evaluate_job(job_id: JobId, registry: RegistryDep, clock: ClockDep, key: AdminKey,
                 body: EvaluateCreate | None = None) -> EvaluationPublic:
    """Queues an evaluation (a worker runs it on the held-out learners); poll
    GET /trainer/jobs/{id}/evaluation. Admin only."""
    _job(registry, job_id, key)
    job_service.request_evaluation(registry=registry, job_id=job_id, created_by=actor(key),
                                   policy=body.policy if body else None, clock=clock)
    return _evaluation(registry, job_id)


def _evaluation(registry, job_id: int) -> EvaluationPublic:
    status = job_service.evaluation_status(registry=registry, job_id=job_id)
    return EvaluationPublic(job_id=status.job_id, status=status.status, passed=status.passed,
                            evaluation=status.evaluation,
                            evaluation_job=public(status.evaluation_job) if status.evaluation_job else None)


@router.get("/trainer/jobs/{job_id}/evaluation", response_model=EvaluationPublic, summary="Evaluation results",
            responses={**ERROR_RESPONSES, **_NOT_FOUND})
def get_evaluation(job_id: JobId, registry: RegistryDep, key: ServiceKey) -> EvaluationPublic:
    """`not_evaluated`, `pending` (a worker has it) or `evaluated`, with every threshold check."""
    _job(registry, job_id, key)
    return _evaluation(registry, job_id)


@router.post("/trainer/jobs/{job_id}/promote", response_model=TrainerJobPublic, summary="Promote a job's candidate",
             responses={**ERROR_RESPONSES, **_NOT_FOUND, **_CONFLICT})
def promote_job(job_id: JobId, registry: RegistryDep, clock: ClockDep, key: AdminKey,
                body: PromoteJobCreate | None = None) -> TrainerJobPublic:
    """Only when the job succeeded and its evaluation passed the harness (409 otherwise). Audited.
    Admin only."""
    _job(registry, job_id, key)
    job = job_service.promote_job(registry=registry, job_id=job_id, actor=actor(key),
                                  reason=body.reason if body else None, clock=clock)
    return public(job)


# --- hooks into the rest of the API ----------------------------------------------------------------

def _model_details(registry) -> Any:
    def provider(model_id: str, record) -> dict[str, Any]:
        return models.training_state(registry=registry)

    return provider


def install_hooks(app: FastAPI) -> None:
    """Training and drift state in GET /v1/model/{id}/status (the dashboard shows jobs itself)."""
    registry = app.state.registry
    app.state.hooks.model_details.append(_model_details(registry))
