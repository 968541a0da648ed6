"""Training operations (aivo.registry.tables.training): trainer jobs with leases, pipeline runs, scheduler
runs, leases and overrides, drift references and reports, the adaptive orchestrator's learner snapshots.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)
OPEN = "status IN ('queued', 'validating', 'running')"


def upgrade() -> None:
    op.create_table(
        "trainer_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("model_id", sa.String(128), nullable=False),
        sa.Column("learner_id", sa.Integer(), nullable=True),
        sa.Column("parent_job_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=True),
        sa.Column("config", JSON, nullable=False),
        sa.Column("policy", JSON, nullable=False),
        sa.Column("datasheet", JSON, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("worker_id", sa.String(128), nullable=True),
        sa.Column("lease_expires_at", TS, nullable=True),
        sa.Column("heartbeat_at", TS, nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("progress", JSON, nullable=False),
        sa.Column("result", JSON, nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("candidate_version", sa.String(64), nullable=True),
        sa.Column("evaluation", JSON, nullable=True),
        sa.Column("evaluation_passed", sa.Boolean(), nullable=True),
        sa.Column("promoted_version", sa.String(64), nullable=True),
        sa.Column("promoted_at", TS, nullable=True),
        sa.CheckConstraint("status IN ('queued', 'validating', 'running', 'succeeded', 'failed', 'cancelled')",
                           name="ck_trainer_jobs_status"),
        sa.ForeignKeyConstraint(["learner_id"], ["learners.id"], ondelete="CASCADE",
                                name="fk_trainer_jobs_learner_id_learners"),
        sa.ForeignKeyConstraint(["parent_job_id"], ["trainer_jobs.id"], ondelete="CASCADE",
                                name="fk_trainer_jobs_parent_job_id_trainer_jobs"),
        sa.PrimaryKeyConstraint("id", name="pk_trainer_jobs"),
    )
    op.create_index("ix_trainer_jobs_claim", "trainer_jobs", ["status", "priority", "id"])
    op.create_index("ix_trainer_jobs_created_at", "trainer_jobs", ["created_at"])
    op.create_index("ix_trainer_jobs_learner_id", "trainer_jobs", ["learner_id"])
    op.create_index("ix_trainer_jobs_model_id", "trainer_jobs", ["model_id"])
    op.create_index("ix_trainer_jobs_parent_job_id", "trainer_jobs", ["parent_job_id"])
    op.create_index("ix_trainer_jobs_tenant", "trainer_jobs", ["tenant"])
    # At most one open job per model, enforced by the database on both backends.
    op.create_index("uq_trainer_jobs_one_open_per_model", "trainer_jobs", ["model_id"], unique=True,
                    sqlite_where=sa.text(OPEN), postgresql_where=sa.text(OPEN))

    op.create_table(
        "pipeline_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("model_id", sa.String(128), nullable=False),
        sa.Column("trigger", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("data_hash", sa.String(64), nullable=True),
        sa.Column("split", JSON, nullable=False),
        sa.Column("search", JSON, nullable=False),
        sa.Column("training", JSON, nullable=False),
        sa.Column("test_metrics", JSON, nullable=False),
        sa.Column("active_version", sa.String(64), nullable=True),
        sa.Column("active_test_metrics", JSON, nullable=True),
        sa.Column("relative_improvement", sa.Float(), nullable=True),
        sa.Column("candidate_version", sa.String(64), nullable=True),
        sa.Column("promoted", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("decision", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("details", JSON, nullable=False),
        sa.CheckConstraint("status IN ('running', 'succeeded', 'failed', 'cancelled')",
                           name="ck_pipeline_runs_status"),
        sa.ForeignKeyConstraint(["job_id"], ["trainer_jobs.id"], ondelete="SET NULL",
                                name="fk_pipeline_runs_job_id_trainer_jobs"),
        sa.PrimaryKeyConstraint("id", name="pk_pipeline_runs"),
    )
    op.create_index("ix_pipeline_runs_job_id", "pipeline_runs", ["job_id"])
    op.create_index("ix_pipeline_runs_model_id_started_at", "pipeline_runs", ["model_id", "started_at"])

    op.create_table(
        "scheduler_runs",
        sa.Column("id", BIGINT_PK, nullable=False),
        sa.Column("job_name", sa.String(64), nullable=False),
        sa.Column("scheduled_for", TS, nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("instance_id", sa.String(128), nullable=False),
        sa.Column("forced", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("outcome", JSON, nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint("status IN ('running', 'succeeded', 'skipped', 'failed')",
                           name="ck_scheduler_runs_status"),
        sa.PrimaryKeyConstraint("id", name="pk_scheduler_runs"),
        sa.UniqueConstraint("job_name", "scheduled_for", name="uq_scheduler_runs_job_name_scheduled_for"),
    )
    op.create_index("ix_scheduler_runs_job_name_started_at", "scheduler_runs", ["job_name", "started_at"])

    op.create_table(
        "service_leases",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("acquired_at", TS, nullable=False),
        sa.Column("renewed_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("details", JSON, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_service_leases"),
    )

    op.create_table(
        "scheduler_overrides",
        sa.Column("job_id", sa.String(64), nullable=False),
        sa.Column("trigger", JSON, nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("updated_by", sa.String(128), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("job_id", name="pk_scheduler_overrides"),
    )

    op.create_table(
        "drift_references",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.String(128), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("profile", JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_drift_references"),
        sa.UniqueConstraint("model_id", "version", name="uq_drift_references_model_id_version"),
    )

    op.create_table(
        "drift_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.String(128), nullable=False),
        sa.Column("version", sa.String(64), nullable=True),
        sa.Column("computed_at", TS, nullable=False),
        sa.Column("window_start", TS, nullable=True),
        sa.Column("window_end", TS, nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("drifted", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("signals", JSON, nullable=False),
        sa.Column("action", JSON, nullable=False),
        sa.Column("details", JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_drift_reports"),
    )
    op.create_index("ix_drift_reports_model_id_computed_at", "drift_reports", ["model_id", "computed_at"])

    op.create_table(
        "learner_snapshots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("learner_id", sa.Integer(), nullable=False),
        sa.Column("analysed_at", TS, nullable=False),
        sa.Column("interactions_seen", sa.BigInteger(), nullable=False),
        sa.Column("main_version", sa.String(64), nullable=True),
        sa.Column("decisions", JSON, nullable=False),
        sa.Column("mastery", JSON, nullable=False),
        sa.Column("last_job_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["learner_id"], ["learners.id"], ondelete="CASCADE",
                                name="fk_learner_snapshots_learner_id_learners"),
        sa.ForeignKeyConstraint(["last_job_id"], ["trainer_jobs.id"], ondelete="SET NULL",
                                name="fk_learner_snapshots_last_job_id_trainer_jobs"),
        sa.PrimaryKeyConstraint("id", name="pk_learner_snapshots"),
        sa.UniqueConstraint("learner_id", name="uq_learner_snapshots_learner_id"),
    )


def downgrade() -> None:
    op.drop_table("learner_snapshots")
    op.drop_table("drift_reports")
    op.drop_table("drift_references")
    op.drop_table("scheduler_overrides")
    op.drop_table("service_leases")
    op.drop_table("scheduler_runs")
    op.drop_table("pipeline_runs")
    op.drop_table("trainer_jobs")
