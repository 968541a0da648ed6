"""Trainer jobs: the front doors the API routers and `aivo jobs ...` call, the kinds a worker
runs (`JOB_KINDS`) and the workers themselves (`make_worker`, `start_worker_thread`).

    submit_job(...)          POST /trainer/jobs              -> queued job (datasheet required)
    get_job / list_jobs      GET /trainer/jobs[/{id}]
    cancel(...)              DELETE /trainer/jobs/{id}
    request_evaluation(...)  POST /trainer/jobs/{id}/evaluate -> an evaluation job (a worker runs it)
    evaluation_status(...)   GET /trainer/jobs/{id}/evaluation
    promote_job(...)         POST /trainer/jobs/{id}/promote  -> only when the harness passed

None of them trains or evaluates in the caller's thread: they write rows that workers act on
(promotion is a registry transaction, not a computation).

Kinds live next to the use case they run: `main_brain` (aivo.services.pipeline), `learner_model`
(aivo.services.local_training), `federated` (aivo.services.aggregation), `tutor_clone`
(aivo.services.tutor_clones), `evaluation` (here).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from aivo.brain.train import TrainingStopped
from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.config import Settings
from aivo.errors import ConflictError, DataError, NotFoundError
from aivo.registry import Registry
from aivo.registry.records import Record
from aivo.registry.tables import Learner
from aivo.services.aggregation import FederatedKind
from aivo.services.local_training import LearnerModelKind
from aivo.services.pipeline import MainBrainKind
from aivo.services.tutor_clones import TutorCloneKind
from aivo.training.context import JobContext, JobOutcome
from aivo.training.datasheet import parse_datasheet
from aivo.training.harness import HarnessPolicy
from aivo.training.jobs import (
    JobPage,
    TrainerJobRecord,
    cancel_job,
    create_job,
    get_job,
    list_jobs,
    update_job_fields,
)
from aivo.training.kinds import JobKind, JobKinds
from aivo.training.retraining import kind_for_model
from aivo.training.runs import FEDERATED_MODEL_ID, MAIN_BRAIN_MODEL_ID, learner_model_id
from aivo.training.worker import Worker, WorkerThread, make_worker_id

log = logging.getLogger(__name__)
SUBMITTABLE_KINDS = ("main_brain", "learner_model", "federated")  # in the order error messages name them


class EvaluationKind(JobKind):
    """Re-runs the evaluation harness on another job's candidate (POST /trainer/jobs/{id}/evaluate)."""

    name = "evaluation"

    def check_config(self, *, config: dict[str, Any], settings: Settings) -> None:
        return None

    def run(self, ctx: JobContext) -> JobOutcome:
        with ctx.registry.session(read_only=True) as session:
            parent = get_job(session=session, job_id=ctx.job.parent_job_id)
        kind = JOB_KINDS.get(parent.kind)
        policy = HarnessPolicy.from_mapping(ctx.job.policy or parent.policy, model_kind=kind.model_kind)
        ctx.report("evaluating", 0.1, f"evaluating {parent.candidate_version} (job {parent.id})")
        report = kind.evaluate(job=parent, registry=ctx.registry, settings=ctx.settings, policy=policy)
        if ctx.should_stop():  # the outcome of a cancelled evaluation is not written to the parent
            raise TrainingStopped("evaluation stopped")
        with ctx.registry.session() as session:
            update_job_fields(session=session, job_id=parent.id, evaluation=report.to_dict(),
                              evaluation_passed=report.passed, clock=ctx.clock)
        return JobOutcome(result={"parent_job_id": parent.id, "passed": report.passed, "summary": report.summary()},
                          evaluation=report.to_dict(), evaluation_passed=report.passed)


JOB_KINDS = JobKinds([MainBrainKind(), EvaluationKind(), LearnerModelKind(), FederatedKind(), TutorCloneKind()])
assert {k.name for k in JOB_KINDS if k.submittable} == set(SUBMITTABLE_KINDS)


def make_worker(*, registry: Registry, settings: Settings, clock: Clock = SYSTEM_CLOCK, **options: Any) -> Worker:
    """A worker that runs every kind of `JOB_KINDS` (or `kinds=(...)` of them); see `Worker`."""
    return Worker(registry=registry, settings=settings, job_kinds=JOB_KINDS, clock=clock, **options)


def start_worker_thread(*, registry: Registry, settings: Settings, clock: Clock = SYSTEM_CLOCK,
                        poll_s: float = 2.0, kinds: tuple[str, ...] | None = None) -> WorkerThread:
    """An in-process worker for embedded mode (one background thread): `aivo serve` with its
    scheduler, `aivo scheduler run`."""
    return WorkerThread(make_worker(registry=registry, settings=settings, clock=clock, poll_s=poll_s, kinds=kinds,
                                    worker_id=make_worker_id("embedded"))).start()


def _default_model_id(kind: str, learner_pseudonym: str | None) -> str:
    if kind == "main_brain":
        return MAIN_BRAIN_MODEL_ID
    if kind == "federated":
        return FEDERATED_MODEL_ID
    if learner_pseudonym is None:
        raise DataError("a learner_model job needs a learner")
    return learner_model_id(learner_pseudonym)


def submit_job(*, registry: Registry, settings: Settings, kind: str, datasheet: Any, created_by: str,
               config: dict[str, Any] | None = None, policy: dict[str, Any] | None = None,
               priority: str = "normal", reason: str = "", learner_pseudonym: str | None = None,
               tenant: str | None = None, max_attempts: int = 1, clock: Clock = SYSTEM_CLOCK) -> TrainerJobRecord:
    """Validate and queue a job. DataError (422) for a missing/incomplete datasheet or a bad
    config/policy, ConflictError (409) when the model already has an open job."""
    if kind not in SUBMITTABLE_KINDS:
        raise DataError(f"kind must be one of {', '.join(SUBMITTABLE_KINDS)}, got {kind!r}")
    sheet = parse_datasheet(datasheet)
    job_kind = JOB_KINDS.get(kind)
    job_kind.check_config(config=dict(config or {}), settings=settings)
    if job_kind.model_kind is not None:
        HarnessPolicy.from_mapping(policy, model_kind=job_kind.model_kind)  # refuse bad thresholds now
    model_id = _default_model_id(kind, learner_pseudonym)
    kind_for_model(model_id)

    def work(session) -> TrainerJobRecord:
        learner_pk = None
        job_tenant = tenant
        if learner_pseudonym is not None:
            row = session.execute(sa.select(Learner.id, Learner.tenant)
                                  .where(Learner.pseudonym == learner_pseudonym)).first()
            if row is None or (tenant is not None and row[1] != tenant):
                raise NotFoundError("learner not found")
            learner_pk, job_tenant = row[0], row[1]
        return create_job(session=session, kind=kind, model_id=model_id, datasheet=sheet, created_by=created_by,
                          config=config, policy=policy, priority=priority, reason=reason, tenant=job_tenant,
                          learner_pk=learner_pk, max_attempts=max_attempts, clock=clock)

    job = registry.run(work)
    log.info("job %d queued: %s %s by %s (%s)", job.id, kind, model_id, created_by, reason or "no reason given")
    return job


def fetch_job(*, registry: Registry, job_id: int) -> TrainerJobRecord:
    return registry.run(lambda session: get_job(session=session, job_id=job_id), read_only=True)


def find_jobs(*, registry: Registry, status: str | None = None, model_id: str | None = None,
              kind: str | None = None, tenant: str | None = None, visible_to_tenant: str | None = None,
              limit: int = 50, offset: int = 0) -> JobPage:
    return registry.run(lambda session: list_jobs(session=session, status=status, model_id=model_id, kind=kind,
                                                  tenant=tenant, visible_to_tenant=visible_to_tenant, limit=limit,
                                                  offset=offset), read_only=True)


def cancel(*, registry: Registry, job_id: int, clock: Clock = SYSTEM_CLOCK) -> TrainerJobRecord:
    job = registry.run(lambda session: cancel_job(session=session, job_id=job_id, clock=clock))
    log.info("job %d: cancellation %s", job_id, "done" if job.status == "cancelled" else "requested")
    return job


def request_evaluation(*, registry: Registry, job_id: int, created_by: str, policy: dict[str, Any] | None = None,
                       clock: Clock = SYSTEM_CLOCK) -> TrainerJobRecord:
    """Queue an evaluation of job `job_id`'s candidate (with `policy`, else the job's own)."""
    parent = fetch_job(registry=registry, job_id=job_id)
    kind = JOB_KINDS.get(parent.kind)
    if kind.model_kind is None:
        raise ConflictError(f"{parent.kind} jobs have no evaluation harness")
    if parent.status != "succeeded" or not parent.candidate_version:
        raise ConflictError(f"job {job_id} has no candidate to evaluate yet (status {parent.status})")
    HarnessPolicy.from_mapping(policy if policy is not None else parent.policy, model_kind=kind.model_kind)

    def work(session) -> TrainerJobRecord:
        return create_job(session=session, kind="evaluation", model_id=f"evaluation:job-{job_id}",
                          datasheet=parse_datasheet(parent.datasheet), created_by=created_by,
                          policy=policy if policy is not None else parent.policy, priority="high",
                          reason=f"evaluate the candidate {parent.candidate_version} of job {job_id}",
                          tenant=parent.tenant, parent_job_id=job_id, clock=clock)

    return registry.run(work)


@dataclass(frozen=True)
class EvaluationStatus(Record):
    job_id: int
    status: str  # not_evaluated | pending | evaluated
    passed: bool | None
    evaluation: dict[str, Any] | None
    evaluation_job: TrainerJobRecord | None  # the latest evaluation job, if any


def evaluation_status(*, registry: Registry, job_id: int) -> EvaluationStatus:
    job = fetch_job(registry=registry, job_id=job_id)
    latest = registry.run(lambda session: list_jobs(session=session, model_id=f"evaluation:job-{job_id}",
                                                    limit=1), read_only=True).jobs
    latest_job = latest[0] if latest else None
    if latest_job is not None and latest_job.is_open:
        status = "pending"
    elif job.evaluation is not None:
        status = "evaluated"
    else:
        status = "not_evaluated"
    return EvaluationStatus(job_id=job_id, status=status, passed=job.evaluation_passed, evaluation=job.evaluation,
                            evaluation_job=latest_job)


def promote_job(*, registry: Registry, job_id: int, actor: str, reason: str | None = None,
                clock: Clock = SYSTEM_CLOCK) -> TrainerJobRecord:
    """Make the job's candidate the active version. Refused (409) unless the job succeeded, has a
    candidate that is not yet promoted, and its evaluation passed the harness."""
    job = fetch_job(registry=registry, job_id=job_id)
    kind = JOB_KINDS.get(job.kind)
    if job.status != "succeeded" or not job.candidate_version:
        raise ConflictError(f"job {job_id} has no candidate to promote (status {job.status})")
    if job.promoted_version:
        raise ConflictError(f"job {job_id} already promoted {job.promoted_version}")
    if job.evaluation_passed is not True:
        why = "was not evaluated" if job.evaluation is None else "did not pass the evaluation harness"
        raise ConflictError(f"job {job_id}'s candidate {job.candidate_version} {why}; "
                            "run POST /trainer/jobs/{id}/evaluate (aivo jobs evaluate) and promote once it passes")
    reason = reason or f"promoted from trainer job {job_id}: {(job.evaluation or {}).get('summary', 'harness passed')}"
    version = kind.promote(job=job, registry=registry, actor=actor, reason=reason, clock=clock)
    registry.run(lambda session: update_job_fields(session=session, job_id=job_id, promoted_version=version,
                                                   promoted_at=clock.now(), clock=clock))
    log.info("job %d: %s promoted by %s", job_id, version, actor)
    return fetch_job(registry=registry, job_id=job_id)
