"""The model registry's tables (revisions 0001, 0002): learners, main versions, learner models,
training sessions, federated updates, interactions and the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from aivo.registry.tables.base import DEFAULT_TENANT, Base
from aivo.registry.types import SHA256, BigIntPK, JSONDict, UTCDateTime

MAIN_STATUSES = ("candidate", "active", "archived")
# pending: provisioned, not trained yet; fallback: served by the main model because the
# personal model validated worse; inactive: kept but not served or aggregated.
LEARNER_MODEL_STATUSES = ("pending", "active", "fallback", "inactive")
FEDERATED_STATUSES = ("applied", "rejected", "failed")


class Learner(Base):
    __tablename__ = "learners"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    pseudonym: Mapped[str] = mapped_column(sa.String(64), unique=True)  # HMAC of the raw id
    tenant: Mapped[str] = mapped_column(sa.String(64), default=DEFAULT_TENANT,
                                        server_default=DEFAULT_TENANT, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class MainModelVersion(Base):
    __tablename__ = "main_model_versions"
    __table_args__ = (
        sa.CheckConstraint("status IN ('candidate', 'active', 'archived')", name="status"),
        # The single-active rule lives in the database: at most one row may be 'active'.
        sa.Index("uq_main_model_versions_one_active", "status", unique=True,
                 sqlite_where=sa.text("status = 'active'"),
                 postgresql_where=sa.text("status = 'active'")),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    version: Mapped[str] = mapped_column(sa.String(64), unique=True)
    status: Mapped[str] = mapped_column(sa.String(16), default="candidate")
    architecture: Mapped[dict[str, Any]] = mapped_column(JSONDict, default=dict)
    training_metrics: Mapped[dict[str, Any]] = mapped_column(JSONDict, default=dict)
    data_hash: Mapped[str | None] = mapped_column(sa.String(64))
    parent_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("main_model_versions.id", ondelete="SET NULL"))
    artifact_sha256: Mapped[str] = mapped_column(SHA256)
    artifact_size: Mapped[int] = mapped_column(sa.BigInteger)
    details: Mapped[dict[str, Any]] = mapped_column(JSONDict, default=dict)
    created_by: Mapped[str | None] = mapped_column(sa.String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # last time it became active


class LearnerModel(Base):
    """A learner's clone: personal parameters plus the main version they sit on."""

    __tablename__ = "learner_models"
    __table_args__ = (
        sa.UniqueConstraint("learner_id", "kind"),
        sa.CheckConstraint("status IN ('pending', 'active', 'fallback', 'inactive')", name="status"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    learner_id: Mapped[int] = mapped_column(sa.ForeignKey("learners.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(sa.String(32), default="brain")  # brain | tutor | ...
    main_version_id: Mapped[int] = mapped_column(
        sa.ForeignKey("main_model_versions.id", ondelete="RESTRICT"), index=True)
    artifact_sha256: Mapped[str | None] = mapped_column(SHA256)  # personal parameters
    status: Mapped[str] = mapped_column(sa.String(16), default="active", index=True)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONDict, default=dict)
    performance: Mapped[float | None] = mapped_column(sa.Float)  # primary metric, averaged in stats
    last_trained_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSONDict, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class FederatedUpdate(Base):
    __tablename__ = "federated_updates"
    __table_args__ = (
        sa.CheckConstraint("status IN ('applied', 'rejected', 'failed')", name="status"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    version_before_id: Mapped[int] = mapped_column(
        sa.ForeignKey("main_model_versions.id", ondelete="RESTRICT"), index=True)
    version_after_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("main_model_versions.id", ondelete="RESTRICT"))
    strategy: Mapped[str] = mapped_column(sa.String(32))
    num_contributors: Mapped[int] = mapped_column(sa.Integer)
    metrics_before: Mapped[dict[str, Any]] = mapped_column(JSONDict, default=dict)
    metrics_after: Mapped[dict[str, Any]] = mapped_column(JSONDict, default=dict)
    improvement: Mapped[float | None] = mapped_column(sa.Float)
    privacy: Mapped[dict[str, Any]] = mapped_column(JSONDict, default=dict)  # epsilon, delta, sigma, q, C
    status: Mapped[str] = mapped_column(sa.String(16))
    details: Mapped[dict[str, Any]] = mapped_column(JSONDict, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class TrainingSession(Base):
    __tablename__ = "training_sessions"
    __table_args__ = (
        sa.Index("ix_training_sessions_learner_model_id_trained_at", "learner_model_id", "trained_at"),
        # Eligibility scans only the not-yet-contributed sessions of the last few days.
        sa.Index("ix_training_sessions_pending", "trained_at", "learner_model_id",
                 sqlite_where=sa.text("contributed = 0"),
                 postgresql_where=sa.text("contributed = false")),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    learner_model_id: Mapped[int] = mapped_column(sa.ForeignKey("learner_models.id", ondelete="CASCADE"))
    main_version_id: Mapped[int] = mapped_column(
        sa.ForeignKey("main_model_versions.id", ondelete="RESTRICT"), index=True)
    epochs: Mapped[int] = mapped_column(sa.Integer)
    batch_size: Mapped[int] = mapped_column(sa.Integer)
    samples: Mapped[int] = mapped_column(sa.Integer)
    final_loss: Mapped[float | None] = mapped_column(sa.Float)
    final_accuracy: Mapped[float | None] = mapped_column(sa.Float)
    dp: Mapped[dict[str, Any]] = mapped_column(JSONDict, default=dict)  # record-level DP-SGD settings
    epsilon_spent: Mapped[float | None] = mapped_column(sa.Float)  # record-level epsilon of this session
    contributed: Mapped[bool] = mapped_column(sa.Boolean, default=False, server_default=sa.false())
    federated_update_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("federated_updates.id", ondelete="SET NULL"), index=True)
    artifact_sha256: Mapped[str | None] = mapped_column(SHA256)  # personal parameters after training
    update_artifact_sha256: Mapped[str | None] = mapped_column(SHA256)  # the learner's update (delta)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONDict, default=dict)
    details: Mapped[dict[str, Any]] = mapped_column(JSONDict, default=dict)
    trained_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Interaction(Base):
    """One attempt (aivo.data.schema), learner pseudonymized; `position` is the schema's `order`."""

    __tablename__ = "interactions"
    __table_args__ = (sa.UniqueConstraint("learner_id", "position"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    learner_id: Mapped[int] = mapped_column(sa.ForeignKey("learners.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(sa.BigInteger)
    item_id: Mapped[str] = mapped_column(sa.String(256))
    skill_ids: Mapped[str] = mapped_column(sa.String(1024))
    correct: Mapped[int] = mapped_column(sa.SmallInteger)
    timestamp: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    response_time_s: Mapped[float | None] = mapped_column(sa.Float)
    subject: Mapped[str | None] = mapped_column(sa.String(64))
    grade: Mapped[int | None] = mapped_column(sa.SmallInteger)
    item_type: Mapped[str | None] = mapped_column(sa.String(64))
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSONDict)  # columns beyond the schema
    ingested_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class AuditEntry(Base):
    """Who did what, when and why. Never holds personal data (no learner pseudonyms)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    actor: Mapped[str] = mapped_column(sa.String(128))
    action: Mapped[str] = mapped_column(sa.String(64), index=True)
    target: Mapped[str | None] = mapped_column(sa.String(256))
    reason: Mapped[str] = mapped_column(sa.Text, default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSONDict, default=dict)
