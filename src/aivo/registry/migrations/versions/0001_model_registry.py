"""Model registry: learners, main versions, learner models, training sessions, federated
updates, audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "learners",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pseudonym", sa.String(64), nullable=False),
        sa.Column("tenant", sa.String(64), server_default="default", nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_learners"),
        sa.UniqueConstraint("pseudonym", name="uq_learners_pseudonym"),
    )
    op.create_index("ix_learners_tenant", "learners", ["tenant"])

    op.create_table(
        "main_model_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("architecture", JSON, nullable=False),
        sa.Column("training_metrics", JSON, nullable=False),
        sa.Column("data_hash", sa.String(64), nullable=True),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("artifact_sha256", sa.String(64), nullable=False),
        sa.Column("artifact_size", sa.BigInteger(), nullable=False),
        sa.Column("details", JSON, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("activated_at", TS, nullable=True),
        sa.CheckConstraint("status IN ('candidate', 'active', 'archived')",
                           name="ck_main_model_versions_status"),
        sa.ForeignKeyConstraint(["parent_id"], ["main_model_versions.id"], ondelete="SET NULL",
                                name="fk_main_model_versions_parent_id_main_model_versions"),
        sa.PrimaryKeyConstraint("id", name="pk_main_model_versions"),
        sa.UniqueConstraint("version", name="uq_main_model_versions_version"),
    )
    # At most one active version, enforced by the database on both backends.
    op.create_index("uq_main_model_versions_one_active", "main_model_versions", ["status"], unique=True,
                    sqlite_where=sa.text("status = 'active'"),
                    postgresql_where=sa.text("status = 'active'"))

    op.create_table(
        "learner_models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("learner_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("main_version_id", sa.Integer(), nullable=False),
        sa.Column("artifact_sha256", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("metrics", JSON, nullable=False),
        sa.Column("performance", sa.Float(), nullable=True),
        sa.Column("last_trained_at", TS, nullable=True),
        sa.Column("details", JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint("status IN ('pending', 'active', 'fallback', 'inactive')",
                           name="ck_learner_models_status"),
        sa.ForeignKeyConstraint(["learner_id"], ["learners.id"], ondelete="CASCADE",
                                name="fk_learner_models_learner_id_learners"),
        sa.ForeignKeyConstraint(["main_version_id"], ["main_model_versions.id"], ondelete="RESTRICT",
                                name="fk_learner_models_main_version_id_main_model_versions"),
        sa.PrimaryKeyConstraint("id", name="pk_learner_models"),
        sa.UniqueConstraint("learner_id", "kind", name="uq_learner_models_learner_id_kind"),
    )
    op.create_index("ix_learner_models_main_version_id", "learner_models", ["main_version_id"])
    op.create_index("ix_learner_models_status", "learner_models", ["status"])
    op.create_index("ix_learner_models_last_trained_at", "learner_models", ["last_trained_at"])

    op.create_table(
        "federated_updates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_before_id", sa.Integer(), nullable=False),
        sa.Column("version_after_id", sa.Integer(), nullable=True),
        sa.Column("strategy", sa.String(32), nullable=False),
        sa.Column("num_contributors", sa.Integer(), nullable=False),
        sa.Column("metrics_before", JSON, nullable=False),
        sa.Column("metrics_after", JSON, nullable=False),
        sa.Column("improvement", sa.Float(), nullable=True),
        sa.Column("privacy", JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("details", JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint("status IN ('applied', 'rejected', 'failed')", name="ck_federated_updates_status"),
        sa.ForeignKeyConstraint(["version_before_id"], ["main_model_versions.id"], ondelete="RESTRICT",
                                name="fk_federated_updates_version_before_id_main_model_versions"),
        sa.ForeignKeyConstraint(["version_after_id"], ["main_model_versions.id"], ondelete="RESTRICT",
                                name="fk_federated_updates_version_after_id_main_model_versions"),
        sa.PrimaryKeyConstraint("id", name="pk_federated_updates"),
    )
    op.create_index("ix_federated_updates_version_before_id", "federated_updates", ["version_before_id"])
    op.create_index("ix_federated_updates_created_at", "federated_updates", ["created_at"])

    op.create_table(
        "training_sessions",
        sa.Column("id", BIGINT_PK, nullable=False),
        sa.Column("learner_model_id", sa.Integer(), nullable=False),
        sa.Column("main_version_id", sa.Integer(), nullable=False),
        sa.Column("epochs", sa.Integer(), nullable=False),
        sa.Column("batch_size", sa.Integer(), nullable=False),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("final_loss", sa.Float(), nullable=True),
        sa.Column("final_accuracy", sa.Float(), nullable=True),
        sa.Column("dp", JSON, nullable=False),
        sa.Column("epsilon_spent", sa.Float(), nullable=True),
        sa.Column("contributed", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("federated_update_id", sa.Integer(), nullable=True),
        sa.Column("artifact_sha256", sa.String(64), nullable=True),
        sa.Column("update_artifact_sha256", sa.String(64), nullable=True),
        sa.Column("metrics", JSON, nullable=False),
        sa.Column("details", JSON, nullable=False),
        sa.Column("trained_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["learner_model_id"], ["learner_models.id"], ondelete="CASCADE",
                                name="fk_training_sessions_learner_model_id_learner_models"),
        sa.ForeignKeyConstraint(["main_version_id"], ["main_model_versions.id"], ondelete="RESTRICT",
                                name="fk_training_sessions_main_version_id_main_model_versions"),
        sa.ForeignKeyConstraint(["federated_update_id"], ["federated_updates.id"], ondelete="SET NULL",
                                name="fk_training_sessions_federated_update_id_federated_updates"),
        sa.PrimaryKeyConstraint("id", name="pk_training_sessions"),
    )
    op.create_index("ix_training_sessions_learner_model_id_trained_at", "training_sessions",
                    ["learner_model_id", "trained_at"])
    op.create_index("ix_training_sessions_main_version_id", "training_sessions", ["main_version_id"])
    op.create_index("ix_training_sessions_federated_update_id", "training_sessions", ["federated_update_id"])
    op.create_index("ix_training_sessions_pending", "training_sessions", ["trained_at", "learner_model_id"],
                    sqlite_where=sa.text("contributed = 0"),
                    postgresql_where=sa.text("contributed = false"))

    op.create_table(
        "audit_log",
        sa.Column("id", BIGINT_PK, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(256), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("details", JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_action", "audit_log", ["action"])


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("training_sessions")
    op.drop_table("federated_updates")
    op.drop_table("learner_models")
    op.drop_table("main_model_versions")
    op.drop_table("learners")
