"""`schedule_retraining`: the one way the scheduler, drift monitoring and manual triggers ask for
a model to be retrained. It queues a trainer job (a worker runs it) after two guards:

- a model that is already training (has an open job) is not started again: the open job is
  returned instead (and the database's one-open-job index settles races between processes);
- a model trained less than MIN_TRAINING_INTERVAL_HOURS ago is not retrained, unless `force`.

Model ids name families: `aivo-main-brain` (the continuous pipeline), `aivo-federated-aggregation`
(issue 4's aggregation, when installed) and `learner:<pseudonym>` (one learner's clone).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.config import Settings
from aivo.errors import ConflictError, NotFoundError
from aivo.registry import Registry
from aivo.registry.tables import Learner
from aivo.registry.records import Record
from aivo.training.datasheet import Datasheet, registry_datasheet
from aivo.training.jobs import TrainerJobRecord, create_job, last_finished_training, open_job_for_model
from aivo.training.runs import FEDERATED_MODEL_ID, LEARNER_MODEL_PREFIX, MAIN_BRAIN_MODEL_ID, last_training

log = logging.getLogger(__name__)

MODEL_FAMILIES = {MAIN_BRAIN_MODEL_ID: "main_brain", FEDERATED_MODEL_ID: "federated"}


@dataclass(frozen=True)
class RetrainingDecision(Record):
    status: str  # queued | already_training | too_soon
    model_id: str
    reason: str
    job: TrainerJobRecord | None
    last_trained_at: datetime | None = None


def kind_for_model(model_id: str) -> str:
    if model_id in MODEL_FAMILIES:
        return MODEL_FAMILIES[model_id]
    if model_id.startswith(LEARNER_MODEL_PREFIX) and len(model_id) > len(LEARNER_MODEL_PREFIX):
        return "learner_model"
    known = ", ".join([*MODEL_FAMILIES, f"{LEARNER_MODEL_PREFIX}<learner pseudonym>"])
    raise NotFoundError(f"unknown model {model_id!r}; models that can be trained: {known}")


def last_trained_at(*, session: Session, model_id: str) -> datetime | None:
    """The latest successful training of `model_id`: pipeline runs and finished jobs."""
    times = [last_training(session=session).get(model_id),
             last_finished_training(session=session, model_id=model_id)]
    times = [t for t in times if t is not None]
    return max(times) if times else None


def _learner_pk(session: Session, model_id: str) -> tuple[int | None, str | None]:
    if not model_id.startswith(LEARNER_MODEL_PREFIX):
        return None, None
    pseudonym = model_id[len(LEARNER_MODEL_PREFIX):]
    row = session.execute(sa.select(Learner.id, Learner.tenant).where(Learner.pseudonym == pseudonym)).first()
    if row is None:
        raise NotFoundError(f"learner {pseudonym[:12]}... does not exist")
    return row[0], row[1]


def schedule_retraining(*, registry: Registry, settings: Settings, model_id: str, reason: str,
                        priority: str = "normal", force: bool = False, created_by: str = "scheduler",
                        config: dict[str, Any] | None = None, policy: dict[str, Any] | None = None,
                        datasheet: Datasheet | None = None, clock: Clock = SYSTEM_CLOCK) -> RetrainingDecision:
    kind = kind_for_model(model_id)
    now = clock.now()

    def work(session: Session) -> RetrainingDecision:
        existing = open_job_for_model(session=session, model_id=model_id)
        if existing is not None:
            return RetrainingDecision("already_training", model_id,
                                      f"{model_id} is already training (job {existing.id}, {existing.status})",
                                      existing)
        last = last_trained_at(session=session, model_id=model_id)
        min_gap = timedelta(hours=settings.min_training_interval_hours)
        if not force and last is not None and now - last < min_gap:
            hours = (now - last).total_seconds() / 3600
            return RetrainingDecision("too_soon", model_id,
                                      f"{model_id} was trained {hours:.1f} h ago, less than "
                                      f"MIN_TRAINING_INTERVAL_HOURS={settings.min_training_interval_hours:g} "
                                      "(force to override)", None, last)
        learner_pk, tenant = _learner_pk(session, model_id)
        try:
            job = create_job(session=session, kind=kind, model_id=model_id,
                             datasheet=datasheet or registry_datasheet(tenant=tenant), created_by=created_by,
                             config=config, policy=policy, priority=priority, reason=reason, tenant=tenant,
                             learner_pk=learner_pk, clock=clock)
        except ConflictError:
            existing = open_job_for_model(session=session, model_id=model_id)
            return RetrainingDecision("already_training", model_id, f"{model_id} is already training", existing)
        return RetrainingDecision("queued", model_id, reason, job, last)

    decision = registry.run(work)
    if decision.status == "queued":
        log.info("scheduled %s training job %d (reason: %s, priority %s)", model_id, decision.job.id, reason, priority)
    else:
        log.info("not scheduling %s: %s", model_id, decision.reason)
    return decision


def weekly_full_retraining(*, registry: Registry, settings: Settings, clock: Clock = SYSTEM_CLOCK
                           ) -> list[RetrainingDecision]:
    """The weekly full retraining: the Main Brain, forced past the minimum interval (the daily run
    a few hours earlier would otherwise hold it back), with twice the hyperparameter-search trials.
    Learner clones retrain through the adaptive check; federated aggregation has its own weekly job."""
    config = {"hpo_trials": settings.hpo_trials * 2}
    return [schedule_retraining(registry=registry, settings=settings, model_id=MAIN_BRAIN_MODEL_ID,
                                reason="weekly_full_retraining", priority="normal", force=True, config=config,
                                clock=clock)]
