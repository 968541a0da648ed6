"""A learner's baseline assessment: store the answers, provision the learner's clone, and queue
its first local training (a `learner_model` trainer job: training runs in workers, never in
the request)."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.config import Settings
from aivo.data.schema import split_skills
from aivo.errors import ConflictError
from aivo.registry import ImportResult, LearnerModelRecord, Registry, get_learner_model
from aivo.services.clones import clone_learner
from aivo.services.ingest import ingest_interactions
from aivo.training.retraining import schedule_retraining
from aivo.training.runs import learner_model_id

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SkillBaseline:
    skill_id: str
    attempts: int
    accuracy: float


@dataclass(frozen=True)
class BaselineResult:
    learner_id: str  # the pseudonym
    stored: ImportResult
    answers: int
    correct_rate: float
    skills: list[SkillBaseline]
    clone: LearnerModelRecord
    clone_created: bool
    training_status: str  # queued | already_training | too_soon
    training_job_id: int | None
    training_reason: str


def _skill_summary(columns: Mapping[str, Sequence[Any]]) -> list[SkillBaseline]:
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    skills = columns.get("skill_ids") or [None] * len(columns["item_id"])
    for item, skill_text, correct in zip(columns["item_id"], skills, columns["correct"]):
        for skill in split_skills(skill_text or item):
            counts[skill][0] += 1
            counts[skill][1] += int(correct)
    return [SkillBaseline(skill, n, round(right / n, 4)) for skill, (n, right) in sorted(counts.items())]


def complete_baseline(*, registry: Registry, settings: Settings, learner_id: str, answers: Mapping[str, Sequence[Any]],
                      tenant: str, actor: str, reset_clone: bool = False,
                      clock: Clock = SYSTEM_CLOCK) -> BaselineResult:
    """`learner_id` is the raw id; `answers` are the assessment's attempts as ingest columns
    (without learner_id). The clone is created on the active Main Brain (kept if it exists,
    unless `reset_clone`), and one local-training job is queued for it."""
    n = len(answers["item_id"])
    columns = {**answers, "learner_id": [learner_id] * n}
    stored = ingest_interactions(registry=registry, settings=settings, columns=columns, tenant=tenant, clock=clock,
                                 source="api:baseline")
    pseudonym = stored.learner_ids[0]
    try:
        clone = clone_learner(registry=registry, settings=settings, learner_id=pseudonym, tenant=tenant,
                              reset=reset_clone, clock=clock)
        model, created = clone.model, clone.created
    except ConflictError:  # already cloned: a later baseline refines the same clone
        with registry.session(read_only=True) as session:
            model, created = get_learner_model(session=session, learner_id=pseudonym, kind="brain"), False
    decision = schedule_retraining(registry=registry, settings=settings, model_id=learner_model_id(pseudonym),
                                   reason="baseline assessment", priority="high", force=True, created_by=actor,
                                   clock=clock)
    correct = sum(int(c) for c in answers["correct"])
    log.info("baseline of %d answers stored; clone %s; training %s", n, "created" if created else "kept",
             decision.status)
    return BaselineResult(learner_id=pseudonym, stored=stored.result, answers=n, correct_rate=round(correct / n, 4),
                          skills=_skill_summary(answers), clone=model, clone_created=created,
                          training_status=decision.status,
                          training_job_id=decision.job.id if decision.job is not None else None,
                          training_reason=decision.reason)
