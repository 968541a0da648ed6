"""Registry statistics in one round trip (the seed design's `getStatistics`)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from aivo.registry.tables import FederatedUpdate, Learner, LearnerModel, MainModelVersion, TrainingSession
from aivo.registry.records import RegistryStatistics


def get_statistics(*, session: Session) -> RegistryStatistics:
    """Counts of versions, learners, models, sessions and updates, and the mean performance
    of active learner models. Every figure comes from one consistent snapshot (one statement)."""

    def count(model, *where):
        return sa.select(sa.func.count()).select_from(model).where(*where).scalar_subquery()

    active_models = (LearnerModel.status == "active",)
    stmt = sa.select(
        count(MainModelVersion),
        sa.select(MainModelVersion.version).where(MainModelVersion.status == "active").scalar_subquery(),
        count(Learner),
        count(LearnerModel),
        count(LearnerModel, *active_models),
        count(FederatedUpdate),
        count(TrainingSession),
        count(TrainingSession, TrainingSession.contributed == sa.false()),
        sa.select(sa.func.avg(LearnerModel.performance)).where(*active_models).scalar_subquery(),
    )
    (versions, active_version, learners, models, active, updates, sessions, pending,
     average) = session.execute(stmt).one()
    return RegistryStatistics(
        total_main_versions=int(versions), active_main_version=active_version, total_learners=int(learners),
        total_learner_models=int(models), active_learner_models=int(active),
        total_federated_updates=int(updates), total_training_sessions=int(sessions),
        pending_training_sessions=int(pending),
        average_performance=None if average is None else float(average))
