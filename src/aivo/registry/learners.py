"""Learners, their models (clones) and their training sessions.

A learner is known only by a pseudonym (keyed HMAC of the raw id) and belongs to a tenant.
A learner model holds the learner's personal-parameter artifact and the main version it sits
on; there is one per (learner, kind), e.g. `brain` for the knowledge-tracing clone and
`tutor` for a LoRA adapter. Each local training adds a training session.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.errors import ConflictError, DataError, NotFoundError
from aivo.registry.artifacts import ArtifactRef, ArtifactStore
from aivo.registry.db import dialect_insert_for, dialect_name
from aivo.registry.tables import (
    DEFAULT_TENANT,
    LEARNER_MODEL_STATUSES,
    Learner,
    LearnerModel,
    MainModelVersion,
    TrainingSession,
)
from aivo.registry.records import (
    LearnerModelHistory,
    LearnerModelRecord,
    LearnerRecord,
    TrainingSessionRecord,
)
from aivo.registry.types import UTCDateTime
from aivo.registry.versions import check_artifact_stored

# --- learners --------------------------------------------------------------------------------
_LEARNER_COLS = (Learner.__table__.c.id, Learner.__table__.c.pseudonym, Learner.__table__.c.tenant,
                 Learner.__table__.c.created_at)
# Statements built once: clone provisioning registers thousands of models, and building a
# statement costs more than running it.
_SELECT_LEARNER = sa.select(*_LEARNER_COLS).where(Learner.__table__.c.pseudonym == sa.bindparam("pseudonym"))
_SELECT_VERSION_ID = sa.select(MainModelVersion.id).where(MainModelVersion.version == sa.bindparam("version"))


@cache
def _insert_learner(dialect: str):
    return (dialect_insert_for(dialect, Learner.__table__).on_conflict_do_nothing(index_elements=["pseudonym"])
            .returning(*_LEARNER_COLS))


@cache
def _insert_learner_model(dialect: str):
    table = LearnerModel.__table__
    return (dialect_insert_for(dialect, table).on_conflict_do_nothing(index_elements=["learner_id", "kind"])
            .returning(table.c.id))


def _check_pseudonym(learner_id: str) -> None:
    if not learner_id or len(learner_id) > 64:
        raise DataError(f"invalid learner pseudonym {learner_id!r} (1-64 characters)")


def _learner_row(session: Session, learner_id: str, tenant: str, clock: Clock, *, known_absent: bool = False):
    """(id, pseudonym, tenant, created_at) of the learner, inserted if new. No savepoint: a
    concurrent insert of the same learner is absorbed by ON CONFLICT DO NOTHING."""
    _check_pseudonym(learner_id)
    row = None if known_absent else session.execute(_SELECT_LEARNER, {"pseudonym": learner_id}).first()
    if row is None:
        row = session.execute(_insert_learner(dialect_name(session)),
                              {"pseudonym": learner_id, "tenant": tenant, "created_at": clock.now()}).first() \
            or session.execute(_SELECT_LEARNER, {"pseudonym": learner_id}).first()
    if row.tenant != tenant:
        raise ConflictError(f"learner {learner_id} belongs to another tenant")
    return row


# One round trip for what registering a clone needs to know: the learner (if any) and the version.
_REGISTER_LOOKUP = sa.select(
    sa.select(Learner.id).where(Learner.pseudonym == sa.bindparam("pseudonym")).scalar_subquery(),
    sa.select(Learner.tenant).where(Learner.pseudonym == sa.bindparam("pseudonym")).scalar_subquery(),
    sa.select(MainModelVersion.id).where(MainModelVersion.version == sa.bindparam("version")).scalar_subquery())


def ensure_learner(*, session: Session, learner_id: str, tenant: str = DEFAULT_TENANT,
                   clock: Clock = SYSTEM_CLOCK) -> LearnerRecord:
    """The learner with pseudonym `learner_id`, created in `tenant` if new. A learner never
    changes tenant: asking for it under another tenant is a conflict."""
    row = _learner_row(session, learner_id, tenant, clock)
    return LearnerRecord(learner_id=row.pseudonym, tenant=row.tenant, created_at=row.created_at)


def get_learner(*, session: Session, learner_id: str) -> LearnerRecord:
    row = session.scalar(sa.select(Learner).where(Learner.pseudonym == learner_id))
    if row is None:
        raise NotFoundError(f"learner {learner_id} does not exist")
    return LearnerRecord(learner_id=row.pseudonym, tenant=row.tenant, created_at=row.created_at)


def list_learners(*, session: Session, tenant: str | None = None, limit: int = 100,
                  offset: int = 0) -> list[LearnerRecord]:
    stmt = sa.select(Learner).order_by(Learner.id).limit(limit).offset(offset)
    if tenant is not None:
        stmt = stmt.where(Learner.tenant == tenant)
    return [LearnerRecord(learner_id=r.pseudonym, tenant=r.tenant, created_at=r.created_at)
            for r in session.scalars(stmt)]


def learner_pk(session: Session, learner_id: str) -> int:
    pk = session.scalar(sa.select(Learner.id).where(Learner.pseudonym == learner_id))
    if pk is None:
        raise NotFoundError(f"learner {learner_id} does not exist")
    return pk


# --- learner models --------------------------------------------------------------------------
_MODEL_COLUMNS = (LearnerModel, Learner.pseudonym, Learner.tenant, MainModelVersion.version)


def _model_select():
    return (sa.select(*_MODEL_COLUMNS).join(Learner, Learner.id == LearnerModel.learner_id)
            .join(MainModelVersion, MainModelVersion.id == LearnerModel.main_version_id))


def _model_record(row: LearnerModel, pseudonym: str, tenant: str, version: str) -> LearnerModelRecord:
    return LearnerModelRecord(
        id=row.id, learner_id=pseudonym, tenant=tenant, kind=row.kind, source_version=version,
        artifact_sha256=row.artifact_sha256, status=row.status, metrics=dict(row.metrics or {}),
        performance=row.performance, last_trained_at=row.last_trained_at, details=dict(row.details or {}),
        created_at=row.created_at, updated_at=row.updated_at)


def _version_id(session: Session, version: str) -> int:
    pk = session.execute(_SELECT_VERSION_ID, {"version": version}).scalar()
    if pk is None:
        raise NotFoundError(f"main version {version!r} does not exist")
    return pk


def _check_status(status: str) -> None:
    if status not in LEARNER_MODEL_STATUSES:
        raise DataError(f"invalid learner model status {status!r}; one of {', '.join(LEARNER_MODEL_STATUSES)}")


# PostgreSQL: the whole registration (find or create the learner, insert the model) in one
# statement, one round trip; it writes nothing unless it succeeds completely.
_REGISTER_PG = sa.text("""
WITH v AS (SELECT id FROM main_model_versions WHERE version = :version),
existing AS (SELECT id, tenant FROM learners WHERE pseudonym = :pseudonym),
created AS (
    INSERT INTO learners (pseudonym, tenant, created_at)
    SELECT :pseudonym, :tenant, :now WHERE NOT EXISTS (SELECT 1 FROM existing) AND EXISTS (SELECT 1 FROM v)
    ON CONFLICT (pseudonym) DO NOTHING RETURNING id, tenant),
l AS (SELECT id, tenant FROM existing UNION ALL SELECT id, tenant FROM created)
INSERT INTO learner_models (learner_id, kind, main_version_id, artifact_sha256, status, metrics, performance,
                            last_trained_at, details, created_at, updated_at)
SELECT l.id, :kind, v.id, :artifact, :status, :metrics, :performance, NULL, :details, :now, :now
FROM l, v WHERE l.tenant = :tenant
ON CONFLICT (learner_id, kind) DO NOTHING
RETURNING id
""").bindparams(sa.bindparam("metrics", type_=JSONB()), sa.bindparam("details", type_=JSONB()),
                sa.bindparam("now", type_=UTCDateTime()), sa.bindparam("performance", type_=sa.Float()))


def register_learner_model(*, session: Session, store: ArtifactStore, learner_id: str, source_version: str,
                           artifact: ArtifactRef | None, kind: str = "brain", status: str | None = None,
                           metrics: dict[str, Any] | None = None, performance: float | None = None,
                           details: dict[str, Any] | None = None, tenant: str = DEFAULT_TENANT,
                           clock: Clock = SYSTEM_CLOCK) -> LearnerModelRecord:
    """Register a learner's clone of `source_version` (the learner is created if new).
    `artifact` holds the personal parameters and must already be in `store`; without one the
    model starts as `pending`."""
    status = status or ("active" if artifact is not None else "pending")
    _check_status(status)
    if artifact is not None:
        check_artifact_stored(store, artifact)
    _check_pseudonym(learner_id)
    now = clock.now()
    artifact_sha256 = artifact.sha256 if artifact else None
    if dialect_name(session) == "postgresql":
        new_id = session.execute(_REGISTER_PG, dict(
            pseudonym=learner_id, tenant=tenant, version=source_version, kind=kind, artifact=artifact_sha256,
            status=status, metrics=dict(metrics or {}), performance=performance, details=dict(details or {}),
            now=now)).scalar()
        if new_id is not None:
            return LearnerModelRecord(id=new_id, learner_id=learner_id, tenant=tenant, kind=kind,
                                      source_version=source_version, artifact_sha256=artifact_sha256,
                                      status=status, metrics=dict(metrics or {}), performance=performance,
                                      last_trained_at=None, details=dict(details or {}), created_at=now,
                                      updated_at=now)
        # Nothing written: an error to report (or a concurrent insert); the general path sorts it out.
    learner_id_pk, learner_tenant, version_id = session.execute(
        _REGISTER_LOOKUP, {"pseudonym": learner_id, "version": source_version}).one()
    if version_id is None:
        raise NotFoundError(f"main version {source_version!r} does not exist")
    if learner_id_pk is None:
        learner_id_pk, _, learner_tenant, _ = _learner_row(session, learner_id, tenant, clock, known_absent=True)
    if learner_tenant != tenant:
        raise ConflictError(f"learner {learner_id} belongs to another tenant")
    values = dict(learner_id=learner_id_pk, kind=kind, main_version_id=version_id,
                  artifact_sha256=artifact.sha256 if artifact else None, status=status,
                  metrics=dict(metrics or {}), performance=performance, last_trained_at=None,
                  details=dict(details or {}), created_at=now, updated_at=now)
    # Core INSERT ... ON CONFLICT DO NOTHING RETURNING: no savepoint, no ORM flush.
    new_id = session.execute(_insert_learner_model(dialect_name(session)), values).scalar()
    if new_id is None:
        raise ConflictError(f"learner {learner_id} already has a {kind!r} model; update it instead")
    return LearnerModelRecord(id=new_id, learner_id=learner_id, tenant=tenant, kind=kind,
                              source_version=source_version, artifact_sha256=values["artifact_sha256"],
                              status=status, metrics=values["metrics"], performance=performance,
                              last_trained_at=None, details=values["details"], created_at=now, updated_at=now)


def _model_row(session: Session, learner_id: str, kind: str) -> LearnerModel:
    row = session.scalar(sa.select(LearnerModel).join(Learner, Learner.id == LearnerModel.learner_id)
                         .where(Learner.pseudonym == learner_id, LearnerModel.kind == kind))
    if row is None:
        raise NotFoundError(f"learner {learner_id} has no {kind!r} model")
    return row


def get_learner_model(*, session: Session, learner_id: str, kind: str = "brain") -> LearnerModelRecord:
    row = session.execute(_model_select().where(Learner.pseudonym == learner_id, LearnerModel.kind == kind)).first()
    if row is None:
        raise NotFoundError(f"learner {learner_id} has no {kind!r} model")
    return _model_record(*row)


def list_learner_models(*, session: Session, status: str | None = None, source_version: str | None = None,
                        tenant: str | None = None, kind: str | None = None, limit: int = 100,
                        offset: int = 0) -> list[LearnerModelRecord]:
    stmt = _model_select().order_by(LearnerModel.id).limit(limit).offset(offset)
    if status is not None:
        stmt = stmt.where(LearnerModel.status == status)
    if source_version is not None:
        stmt = stmt.where(MainModelVersion.version == source_version)
    if tenant is not None:
        stmt = stmt.where(Learner.tenant == tenant)
    if kind is not None:
        stmt = stmt.where(LearnerModel.kind == kind)
    return [_model_record(*row) for row in session.execute(stmt)]


def update_learner_model(*, session: Session, learner_id: str, kind: str = "brain",
                         store: ArtifactStore | None = None, artifact: ArtifactRef | None = None,
                         source_version: str | None = None, status: str | None = None,
                         metrics: dict[str, Any] | None = None, performance: float | None = None,
                         details: dict[str, Any] | None = None,
                         clock: Clock = SYSTEM_CLOCK) -> LearnerModelRecord:
    """Change the given fields (None leaves a field as it is). A new artifact needs `store`.
    `last_trained_at` is not settable: `record_training_session` keeps it equal to the time of
    the latest session (eligibility relies on that)."""
    row = _model_row(session, learner_id, kind)
    if artifact is not None:
        if store is None:
            raise ValueError("update_learner_model: pass store= with artifact=")
        check_artifact_stored(store, artifact)
        row.artifact_sha256 = artifact.sha256
    if source_version is not None:
        row.main_version_id = _version_id(session, source_version)
    if status is not None:
        _check_status(status)
        row.status = status
    if metrics is not None:
        row.metrics = dict(metrics)
    if performance is not None:
        row.performance = performance
    if details is not None:
        row.details = dict(details)
    row.updated_at = clock.now()
    session.flush()
    return get_learner_model(session=session, learner_id=learner_id, kind=kind)


# --- training sessions -----------------------------------------------------------------------
def _session_record(row: TrainingSession, version: str) -> TrainingSessionRecord:
    return TrainingSessionRecord(
        id=row.id, learner_model_id=row.learner_model_id, main_version=version, epochs=row.epochs,
        batch_size=row.batch_size, samples=row.samples, final_loss=row.final_loss,
        final_accuracy=row.final_accuracy, dp=dict(row.dp or {}), epsilon_spent=row.epsilon_spent,
        contributed=bool(row.contributed), federated_update_id=row.federated_update_id,
        artifact_sha256=row.artifact_sha256, update_artifact_sha256=row.update_artifact_sha256,
        metrics=dict(row.metrics or {}), details=dict(row.details or {}), trained_at=row.trained_at)


def record_training_session(*, session: Session, store: ArtifactStore, learner_id: str, epochs: int,
                            batch_size: int, samples: int, kind: str = "brain", main_version: str | None = None,
                            final_loss: float | None = None, final_accuracy: float | None = None,
                            dp: dict[str, Any] | None = None, epsilon_spent: float | None = None,
                            artifact: ArtifactRef | None = None, update_artifact: ArtifactRef | None = None,
                            metrics: dict[str, Any] | None = None, details: dict[str, Any] | None = None,
                            clock: Clock = SYSTEM_CLOCK) -> TrainingSessionRecord:
    """Record one local training of the learner's model.

    `main_version` is the version trained against (default: the model's current one). The
    model's `last_trained_at` moves to now; with `artifact` (the personal parameters after
    training) the model also points at that artifact and at `main_version`, which is how a
    clone moves to a newly promoted version. `update_artifact` is the learner's update for
    federation."""
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("samples", samples)):
        if value < 0:
            raise DataError(f"{name} must be >= 0, got {value}")
    for ref in (artifact, update_artifact):
        if ref is not None:
            check_artifact_stored(store, ref)
    model = _model_row(session, learner_id, kind)
    version_id = model.main_version_id if main_version is None else _version_id(session, main_version)
    now = clock.now()
    row = TrainingSession(learner_model_id=model.id, main_version_id=version_id, epochs=epochs,
                          batch_size=batch_size, samples=samples, final_loss=final_loss,
                          final_accuracy=final_accuracy, dp=dict(dp or {}), epsilon_spent=epsilon_spent,
                          contributed=False, artifact_sha256=artifact.sha256 if artifact else None,
                          update_artifact_sha256=update_artifact.sha256 if update_artifact else None,
                          metrics=dict(metrics or {}), details=dict(details or {}), trained_at=now)
    session.add(row)
    model.last_trained_at = now
    model.updated_at = now
    if artifact is not None:
        model.artifact_sha256 = artifact.sha256
        model.main_version_id = version_id
    session.flush()
    version = session.scalar(sa.select(MainModelVersion.version).where(MainModelVersion.id == version_id))
    return _session_record(row, version)


def learner_model_history(*, session: Session, learner_id: str, kind: str = "brain") -> LearnerModelHistory:
    """The model and every training session it went through, oldest first."""
    model = get_learner_model(session=session, learner_id=learner_id, kind=kind)
    rows = session.execute(
        sa.select(TrainingSession, MainModelVersion.version)
        .join(MainModelVersion, MainModelVersion.id == TrainingSession.main_version_id)
        .where(TrainingSession.learner_model_id == model.id)
        .order_by(TrainingSession.trained_at, TrainingSession.id))
    return LearnerModelHistory(model=model, sessions=[_session_record(r, v) for r, v in rows])
