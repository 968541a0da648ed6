"""Interactions: the pseudonymized learner data that training reads.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "interactions",
        sa.Column("id", BIGINT_PK, nullable=False),
        sa.Column("learner_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("item_id", sa.String(256), nullable=False),
        sa.Column("skill_ids", sa.String(1024), nullable=False),
        sa.Column("correct", sa.SmallInteger(), nullable=False),
        sa.Column("timestamp", TS, nullable=True),
        sa.Column("response_time_s", sa.Float(), nullable=True),
        sa.Column("subject", sa.String(64), nullable=True),
        sa.Column("grade", sa.SmallInteger(), nullable=True),
        sa.Column("item_type", sa.String(64), nullable=True),
        sa.Column("extra", JSON, nullable=True),
        sa.Column("ingested_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["learner_id"], ["learners.id"], ondelete="CASCADE",
                                name="fk_interactions_learner_id_learners"),
        sa.PrimaryKeyConstraint("id", name="pk_interactions"),
        sa.UniqueConstraint("learner_id", "position", name="uq_interactions_learner_id_position"),
    )
    op.create_index("ix_interactions_timestamp", "interactions", ["timestamp"])
    op.create_index("ix_interactions_ingested_at", "interactions", ["ingested_at"])


def downgrade() -> None:
    op.drop_table("interactions")
