"""A learner's status for teachers and operators: data held, personal models, privacy spent."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from aivo.registry import LearnerRecord, Registry, get_learner, learner_model_history
from aivo.registry.models import Interaction, Learner, LearnerModel


@dataclass(frozen=True)
class LearnerModelStatus:
    kind: str
    status: str
    source_version: str
    metrics: dict[str, Any]
    performance: float | None
    last_trained_at: datetime | None
    num_training_sessions: int
    record_level_epsilon: float | None  # the largest of its DP-SGD sessions; never added to user-level


@dataclass(frozen=True)
class LearnerStatus:
    learner: LearnerRecord
    num_interactions: int
    last_interaction_at: datetime | None
    models: list[LearnerModelStatus] = field(default_factory=list)


def learner_status(*, registry: Registry, learner_id: str) -> LearnerStatus:
    """`learner_id` is the pseudonym. Raises NotFoundError for an unknown learner."""
    with registry.session(read_only=True) as session:
        learner = get_learner(session=session, learner_id=learner_id)
        pk = session.scalar(sa.select(Learner.id).where(Learner.pseudonym == learner_id))
        count, last_at = session.execute(
            sa.select(sa.func.count(), sa.func.max(Interaction.timestamp)).where(Interaction.learner_id == pk)).one()
        kinds = list(session.scalars(sa.select(LearnerModel.kind).where(LearnerModel.learner_id == pk)
                                     .order_by(LearnerModel.kind)))
        models = []
        for kind in kinds:
            history = learner_model_history(session=session, learner_id=learner_id, kind=kind)
            epsilons = [s.epsilon_spent for s in history.sessions if s.epsilon_spent is not None]
            m = history.model
            models.append(LearnerModelStatus(kind=m.kind, status=m.status, source_version=m.source_version,
                                             metrics=m.metrics, performance=m.performance,
                                             last_trained_at=m.last_trained_at,
                                             num_training_sessions=len(history.sessions),
                                             record_level_epsilon=max(epsilons) if epsilons else None))
    return LearnerStatus(learner=learner, num_interactions=int(count), last_interaction_at=last_at, models=models)
