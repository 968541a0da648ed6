"""Recommendations for one learner: history from the registry, predictions from the Main Brain
(the learner's personalized model once clones serve it), decisions from the policy."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from aivo.brain.bundle import TrainedBrain
from aivo.brain.catalog import catalog_frame
from aivo.brain.predict import predict_next
from aivo.brain.recommend import PolicyConfig, Recommendation, recommend
from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.config import Settings
from aivo.data.schema import InteractionLog
from aivo.personalization.serving import brain_for_learner
from aivo.registry import Registry, get_learner, load_interactions
from aivo.registry.tables import ApiKeyLearner, Interaction, Learner, LearnerModel, MainModelVersion


def policy_from_settings(settings: Settings, *, num_items: int = 5) -> PolicyConfig:
    return PolicyConfig(target_success=settings.target_success, level_up=settings.mastery_level_up,
                        level_down=settings.mastery_level_down, num_items=num_items)


GRADES_BELOW = 2  # review content from up to two grades below ...
GRADES_ABOVE = 1  # ... and stretch content one grade above the learner's


def candidate_items(catalog: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    """The catalog items that suit this learner: the subjects they study and a band around their
    grade, when the data has those columns. A new learner (or a filter matching nothing) gets
    the whole catalog."""
    candidates = catalog
    if len(history) and "subject" in catalog.columns and "subject" in history.columns:
        subjects = set(history["subject"].dropna().astype(str))
        if subjects:
            candidates = candidates.loc[candidates["subject"].astype(str).isin(subjects)]
    if len(history) and "grade" in catalog.columns and "grade" in history.columns:
        grades = pd.to_numeric(history["grade"], errors="coerce").dropna()
        if len(grades):
            grade = int(grades.iloc[-1])
            in_band = candidates["grade"].between(grade - GRADES_BELOW, grade + GRADES_ABOVE)
            candidates = candidates.loc[in_band.fillna(False).astype(bool)]
    return candidates if len(candidates) else catalog


def recommend_with_brain(*, brain: TrainedBrain, learner_id: str, history: InteractionLog,
                         policy: PolicyConfig, now: datetime | None = None) -> Recommendation:
    """The policy applied to `brain`'s next-step predictions over its whole item catalog."""
    candidates = candidate_items(catalog_frame(brain), history.frame).reset_index(drop=True)
    step = predict_next(brain=brain, history=history, candidates=candidates)
    item_index = brain.vocab.items.encode(candidates["item_id"].astype(str).to_numpy())
    predictions = candidates.assign(
        p_correct=step.p_correct,
        difficulty_level=np.asarray(brain.tables.item_level, dtype=np.int64)[item_index] + 1,  # 1..10
    )
    return recommend(learner_id=learner_id, item_predictions=predictions, history=history.frame,
                     config=policy, now=now)


def serving_brain(*, registry: Registry, learner_id: str) -> TrainedBrain:
    """The model that serves this learner: the active Main Brain, overlaid with the learner's
    personal parameters when an active clone exists (the main model when it is in fallback)."""
    return brain_for_learner(registry=registry, learner_id=learner_id).brain


def recommend_for_learner(*, registry: Registry, settings: Settings, learner_id: str, num_items: int = 5,
                          clock: Clock = SYSTEM_CLOCK) -> Recommendation:
    """`learner_id` is the registry pseudonym (see aivo.services.learners.pseudonym_for)."""
    with registry.session(read_only=True) as session:
        get_learner(session=session, learner_id=learner_id)  # NotFoundError for unknown learners
        history = load_interactions(session=session, learner_ids=[learner_id])
    brain = serving_brain(registry=registry, learner_id=learner_id)
    return recommend_with_brain(brain=brain, learner_id=learner_id, history=history,
                                policy=policy_from_settings(settings, num_items=num_items), now=clock.now())


# --- what a cached recommendation depends on (the API's per-process cache) ----------------------

_it = Interaction.__table__
_lm = LearnerModel.__table__
_mv = MainModelVersion.__table__
_l = Learner.__table__
_akl = ApiKeyLearner.__table__


def _of_learner(column, *where):
    return sa.select(column).where(*where).scalar_subquery()


# One round trip for the whole serving decision: the learner (tenant, teacher link) and the
# stamp. Every subquery is served by an index: learners (pseudonym), api_key_learners (pk),
# interactions (learner_id, position), the partial unique index on the active version,
# learner_models (learner_id, kind).
_LOOKUP = sa.select(
    _l.c.id, _l.c.tenant,
    sa.exists().where(_akl.c.api_key_id == sa.bindparam("key_pk"), _akl.c.learner_id == _l.c.id),
    _of_learner(sa.func.count(), _it.c.learner_id == _l.c.id),
    _of_learner(sa.func.max(_it.c.position), _it.c.learner_id == _l.c.id),
    _of_learner(_mv.c.artifact_sha256, _mv.c.status == "active"),
    _of_learner(_mv.c.version, _mv.c.status == "active"),
    *(_of_learner(column, _lm.c.learner_id == _l.c.id, _lm.c.kind == "brain")
      for column in (_lm.c.status, _lm.c.artifact_sha256, _lm.c.updated_at)),
).where(_l.c.pseudonym == sa.bindparam("pseudonym"))


@dataclass(frozen=True)
class ServingStamp:
    learner_pk: int
    num_interactions: int
    last_position: int | None
    active_artifact: str | None
    active_version: str | None
    personal_model: str | None

    def key(self) -> tuple[Any, ...]:
        return (self.learner_pk, self.num_interactions, self.last_position, self.active_artifact,
                self.personal_model)


@dataclass(frozen=True)
class ServingLookup:
    tenant: str | None  # None: no such learner
    linked: bool  # on the asking key's class list
    stamp: ServingStamp | None


def serving_lookup(*, registry: Registry, pseudonym: str, key_pk: int) -> ServingLookup:
    """In one round trip: the learner (tenant, on the key's class list) and the stamp of what its
    recommendation depends on (interactions, active version, personal model): the API's cache
    serves an entry only while its stamp is unchanged."""
    row = registry.run(lambda session: session.execute(_LOOKUP, {"pseudonym": pseudonym, "key_pk": key_pk}).first(),
                       read_only=True)
    if row is None:
        return ServingLookup(tenant=None, linked=False, stamp=None)
    pk, tenant, linked, count, last, artifact, version, status, personal_artifact, updated = row
    personal = None if status is None else f"{status}:{personal_artifact or ''}:{updated}"
    stamp = ServingStamp(learner_pk=pk, num_interactions=int(count), last_position=last, active_artifact=artifact,
                         active_version=version, personal_model=personal)
    return ServingLookup(tenant=tenant, linked=bool(linked), stamp=stamp)
