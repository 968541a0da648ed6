"""A learner's status for teachers and operators: data held, personal models, privacy spent.

Privacy figures come from aivo.privacy: the user-level epsilon of the learner's ledger
(aggregation) and the record-level epsilon of their local DP-SGD sessions, composed by the
accountant. The two are reported side by side, never added."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from aivo.config import Settings
from aivo.data.schema import MAX_TIMESTAMP, MIN_TIMESTAMP
from aivo.privacy.ledger import LedgerRecord, get_ledgers
from aivo.privacy.record_level import record_level_epsilons
from aivo.registry import LearnerRecord, Registry, get_learner, learner_model_history
from aivo.registry.tables import Interaction, Learner, LearnerModel


@dataclass(frozen=True)
class LearnerModelStatus:
    kind: str
    status: str
    source_version: str
    metrics: dict[str, Any]
    performance: float | None
    last_trained_at: datetime | None
    num_training_sessions: int
    record_level_epsilon: float | None  # its DP-SGD sessions composed; never added to user-level


@dataclass(frozen=True)
class LearnerStatus:
    learner: LearnerRecord
    num_interactions: int
    last_interaction_at: datetime | None
    models: list[LearnerModelStatus] = field(default_factory=list)
    privacy: dict[str, Any] = field(default_factory=dict)  # user level (aggregation), see module doc


def _user_level(session, *, learner_id: str, settings: Settings) -> dict[str, Any]:
    ledger = get_ledgers(session=session, learner_ids=[learner_id]).get(learner_id)
    if ledger is None:  # never eligible for a round: nothing released depends on this learner
        ledger = LedgerRecord(learner_id=learner_id, kind="brain")
    return ledger.to_dict(delta=settings.delta, accountant=settings.accountant, budget=settings.epsilon_budget)


def learner_status(*, registry: Registry, settings: Settings, learner_id: str) -> LearnerStatus:
    """`learner_id` is the pseudonym. Raises NotFoundError for an unknown learner."""
    with registry.session(read_only=True) as session:
        learner = get_learner(session=session, learner_id=learner_id)
        pk = session.scalar(sa.select(Learner.id).where(Learner.pseudonym == learner_id))
        # The latest readable time: a damaged stored value (outside the supported years) is not "last".
        readable = sa.and_(Interaction.timestamp >= MIN_TIMESTAMP, Interaction.timestamp < MAX_TIMESTAMP)
        count, last_at = session.execute(
            sa.select(sa.func.count(), sa.func.max(Interaction.timestamp).filter(readable))
            .where(Interaction.learner_id == pk)).one()
        kinds = list(session.scalars(sa.select(LearnerModel.kind).where(LearnerModel.learner_id == pk)
                                     .order_by(LearnerModel.kind)))
        models = []
        for kind in kinds:
            history = learner_model_history(session=session, learner_id=learner_id, kind=kind)
            record = record_level_epsilons(session=session, learner_ids=[learner_id], delta=settings.delta,
                                           accountant=settings.accountant, kind=kind).get(learner_id, {})
            m = history.model
            models.append(LearnerModelStatus(kind=m.kind, status=m.status, source_version=m.source_version,
                                             metrics=m.metrics, performance=m.performance,
                                             last_trained_at=m.last_trained_at,
                                             num_training_sessions=len(history.sessions),
                                             record_level_epsilon=record.get("epsilon")))
        privacy = _user_level(session, learner_id=learner_id, settings=settings)
    return LearnerStatus(learner=learner, num_interactions=int(count), last_interaction_at=last_at, models=models,
                         privacy=privacy)
