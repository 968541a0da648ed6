"""Privacy ledger: each learner's user-level differential-privacy history (aivo.privacy).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "privacy_ledger",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("learner_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("accountant", sa.String(16), nullable=False),
        sa.Column("history", JSON, nullable=False),
        sa.Column("rounds_eligible", sa.Integer(), nullable=False),
        sa.Column("rounds_sampled", sa.Integer(), nullable=False),
        sa.Column("non_private_rounds", sa.Integer(), nullable=False),
        sa.Column("epsilon", sa.Float(), nullable=True),
        sa.Column("delta", sa.Float(), nullable=False),
        sa.Column("last_round_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["learner_id"], ["learners.id"], ondelete="CASCADE",
                                name="fk_privacy_ledger_learner_id_learners"),
        sa.PrimaryKeyConstraint("id", name="pk_privacy_ledger"),
        sa.UniqueConstraint("learner_id", "kind", name="uq_privacy_ledger_learner_id_kind"),
    )


def downgrade() -> None:
    op.drop_table("privacy_ledger")
