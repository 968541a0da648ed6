"""Federation across sites (aivo.registry.tables.federation): enrolled sites at the coordinator,
per-round records of what a site sent.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "federation_sites",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("enrolled_by", sa.String(128), nullable=True),
        sa.Column("enrolled_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.Column("details", JSON, nullable=False),
        sa.CheckConstraint("status IN ('enrolled', 'revoked')", name="ck_federation_sites_status"),
        sa.PrimaryKeyConstraint("id", name="pk_federation_sites"),
        sa.UniqueConstraint("name", name="uq_federation_sites_name"),
    )
    op.create_table(
        "site_rounds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("round_ref", sa.String(128), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("num_pool", sa.Integer(), nullable=False),
        sa.Column("num_sampled", sa.Integer(), nullable=False),
        sa.Column("num_accepted", sa.Integer(), nullable=False),
        sa.Column("weight_total", sa.Float(), nullable=False),
        sa.Column("payload_norm", sa.Float(), nullable=True),
        sa.Column("payload_artifact_sha256", sa.String(64), nullable=True),
        sa.Column("settings", JSON, nullable=False),
        sa.Column("details", JSON, nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint("status IN ('sent', 'refused')", name="ck_site_rounds_status"),
        sa.PrimaryKeyConstraint("id", name="pk_site_rounds"),
    )
    op.create_index("ix_site_rounds_created_at", "site_rounds", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_site_rounds_created_at", table_name="site_rounds")
    op.drop_table("site_rounds")
    op.drop_table("federation_sites")
