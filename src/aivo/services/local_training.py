"""Local training use case: `train_learner` trains one learner's clone through the registry
(`aivo train-local`, the `learner_model` trainer job).

Reads only that learner's interactions, trains against the *active* Main Brain (a clone whose
source version is older moves to the active one, warm-starting from its personal parameters),
stores the personal parameters and the update as artifacts (durably, before any row), records
the training session and sets the clone's status: `active`, or `fallback` when the
personalized model validated worse than the main model on the held-out interactions.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from aivo.brain.versions import load_main_brain
from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.config import Settings
from aivo.errors import ConflictError, DataError, NotFoundError
from aivo.federated.updates import update_metadata
from aivo.personalization.clone import KIND, load_clone
from aivo.personalization.local import LocalTrainingConfig, RecordLevelDP, train_local
from aivo.personalization.overlay import personal_metadata
from aivo.personalization.parts import partition_parameters
from aivo.registry import (
    LearnerModelRecord,
    Registry,
    TrainingSessionRecord,
    get_learner_model,
    load_interactions,
    record_training_session,
    update_learner_model,
)
from aivo.registry.tables import DEFAULT_TENANT
from aivo.services.clones import clone_learner
from aivo.training.context import JobContext, JobOutcome
from aivo.training.kinds import JobKind

log = logging.getLogger(__name__)


def local_config_from_settings(settings: Settings, **overrides: Any) -> LocalTrainingConfig:
    """A LocalTrainingConfig from AIVO_* settings; keyword overrides (None = keep) win."""
    values: dict[str, Any] = {"epochs": settings.local_epochs, "learning_rate": settings.local_learning_rate,
                              "proximal_mu": settings.fedprox_mu, "personal_l2": settings.personal_l2,
                              "holdout_fraction": settings.holdout_fraction,
                              "fallback_confidence": settings.fallback_confidence,
                              "refit_personal": settings.personal_refit, "seed": settings.seed}
    dp_noise = overrides.pop("dp_noise_multiplier", None)
    dp_clip = overrides.pop("dp_clip_norm", None)
    if dp_noise is None:
        dp_noise = settings.local_dp_noise_multiplier
    if dp_noise is not None and dp_noise > 0:
        values["dp"] = RecordLevelDP(noise_multiplier=dp_noise,
                                     clip_norm=dp_clip if dp_clip is not None else settings.local_dp_clip_norm,
                                     window=settings.local_dp_window, delta=settings.delta,
                                     accountant=settings.accountant)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return LocalTrainingConfig(**values)


@dataclass
class LocalTrainingReport:
    learner_id: str
    main_version: str
    moved_from: str | None  # the clone's previous source version when it moved to a newer one
    status: str  # active | fallback
    session: TrainingSessionRecord
    model: LearnerModelRecord
    metrics: dict
    record_epsilon: float | None
    update_bytes: int | None
    personal_bytes: int
    seconds: float
    config: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"learner_id": self.learner_id, "main_version": self.main_version, "moved_from": self.moved_from,
                "status": self.status, "session": self.session.to_dict(), "model": self.model.to_dict(),
                "metrics": self.metrics, "record_epsilon": self.record_epsilon, "update_bytes": self.update_bytes,
                "personal_bytes": self.personal_bytes, "seconds": round(self.seconds, 3), "config": self.config}


def train_learner(*, registry: Registry, settings: Settings, learner_id: str,
                  config: LocalTrainingConfig | None = None, clock: Clock = SYSTEM_CLOCK) -> LocalTrainingReport:
    """Train the learner's (pseudonym) clone on their own interactions; see the module doc."""
    started = time.perf_counter()
    config = config or local_config_from_settings(settings)
    with registry.session(read_only=True) as session:
        try:
            record = get_learner_model(session=session, learner_id=learner_id, kind=KIND)
        except NotFoundError:
            raise NotFoundError(f"learner {learner_id} has no clone yet: run `aivo clone` first") from None
        if record.status == "inactive":
            raise ConflictError(f"learner {learner_id}'s clone is inactive; reset it with `aivo clone --reset`")
        history = load_interactions(session=session, learner_ids=[learner_id])  # this learner's rows only
    active = load_main_brain(registry=registry)
    clone = load_clone(registry=registry, learner_id=learner_id)
    moved_from = record.source_version if record.source_version != active.version.version else None
    partition = partition_parameters(active.brain.model, frozen_prefixes=settings.freeze_layers)
    result = train_local(brain=active.brain, history=history, partition=partition, config=config,
                         personal_start=clone.personal)

    version = active.version.version
    personal_ref = registry.store.put_tensors(result.personal, metadata=personal_metadata(main_version=version))
    update_ref = None
    if result.update:
        update_ref = registry.store.put_tensors(result.update, metadata=update_metadata(
            main_version=version, num_examples=result.num_train))
    dp = {}
    if config.dp is not None:
        dp = {"noise_multiplier": config.dp.noise_multiplier, "clip_norm": config.dp.clip_norm,
              "window": config.dp.window, "expected_batch_size": config.dp.expected_batch_size,
              "delta": config.dp.delta, "accountant": config.dp.accountant, "history": result.dp_history}
    status = "fallback" if result.fallback else "active"
    served = result.holdout_main if result.fallback else result.holdout_personal
    metrics = result.metrics()
    with registry.session() as session:
        training = record_training_session(
            session=session, store=registry.store, learner_id=learner_id, kind=KIND, epochs=config.epochs,
            batch_size=config.batch_size, samples=result.num_train, main_version=version,
            final_loss=result.train_loss, final_accuracy=result.holdout_personal.get("accuracy"), dp=dp,
            epsilon_spent=result.record_epsilon, artifact=personal_ref, update_artifact=update_ref,
            metrics=metrics, details={"config": config.to_dict(), "partition": partition.to_dict(),
                                      "moved_from": moved_from}, clock=clock)
        model = update_learner_model(session=session, learner_id=learner_id, kind=KIND, status=status,
                                     metrics=metrics, performance=served.get("accuracy"), clock=clock)
    if result.fallback:
        log.info("learner model in fallback (served by the main model): %s", result.fallback_reason)
    return LocalTrainingReport(learner_id=learner_id, main_version=version, moved_from=moved_from, status=status,
                               session=training, model=model, metrics=metrics, record_epsilon=result.record_epsilon,
                               update_bytes=update_ref.size if update_ref else None, personal_bytes=personal_ref.size,
                               seconds=time.perf_counter() - started, config=config.to_dict())


# --- the `learner_model` trainer job ---------------------------------------------------------

class LearnerModelKind(JobKind):
    """The `learner_model` trainer job: one learner's clone trained on their own interactions
    (a learner without a clone is cloned first)."""

    name = "learner_model"
    submittable = True

    def validate(self, ctx: JobContext) -> dict[str, Any]:
        if ctx.job.learner_id is None:
            raise DataError("this learner_model job has no learner any more (erased?)")
        return {}

    def run(self, ctx: JobContext) -> JobOutcome:
        learner_id = ctx.job.learner_id
        with ctx.registry.session(read_only=True) as session:
            try:
                get_learner_model(session=session, learner_id=learner_id)
                cloned = False
            except NotFoundError:
                cloned = True
        if cloned:
            ctx.report("cloning", 0.1, "the learner has no clone yet: cloning the active Main Brain")
            clone_learner(registry=ctx.registry, settings=ctx.settings, learner_id=learner_id,
                          tenant=ctx.job.tenant or DEFAULT_TENANT, clock=ctx.clock)
        ctx.report("running", 0.3, "local training on the learner's own interactions")
        report = train_learner(registry=ctx.registry, settings=ctx.settings, learner_id=learner_id, clock=ctx.clock)
        return JobOutcome(result={"cloned": cloned, **report.to_dict()})
