"""Tutor safety alerts (aivo.tutor.alerts) and the counsellor API-key role.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
ROLES_BEFORE = "role IN ('admin', 'service', 'teacher')"
ROLES_AFTER = "role IN ('admin', 'service', 'teacher', 'counsellor')"


# Revision 0003 named its check "ck_api_keys_role" under the naming convention, which made it
# "ck_api_keys_ck_api_keys_role" in the database; the new one gets the model's name.
OLD_CHECK = "ck_api_keys_ck_api_keys_role"
NEW_CHECK = "ck_api_keys_role"


def _set_roles(check: str, *, drop: str, create: str) -> None:
    # SQLite cannot alter a CHECK constraint in place: batch mode rebuilds the table there (data kept).
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_constraint(op.f(drop), type_="check")
        batch.create_check_constraint(op.f(create), check)


def upgrade() -> None:
    op.create_table(
        "tutor_safety_alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("learner_id", sa.Integer(), nullable=True),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("detector", sa.String(16), nullable=False),
        sa.Column("excerpt", sa.String(160), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("acknowledged_at", TS, nullable=True),
        sa.Column("acknowledged_by", sa.String(128), nullable=True),
        sa.ForeignKeyConstraint(["learner_id"], ["learners.id"], ondelete="CASCADE",
                                name="fk_tutor_safety_alerts_learner_id_learners"),
        sa.PrimaryKeyConstraint("id", name="pk_tutor_safety_alerts"),
    )
    op.create_index("ix_tutor_safety_alerts_tenant", "tutor_safety_alerts", ["tenant"])
    op.create_index("ix_tutor_safety_alerts_learner_id", "tutor_safety_alerts", ["learner_id"])
    op.create_index("ix_tutor_safety_alerts_created_at", "tutor_safety_alerts", ["created_at"])
    _set_roles(ROLES_AFTER, drop=OLD_CHECK, create=NEW_CHECK)


def downgrade() -> None:
    op.execute("DELETE FROM api_keys WHERE role = 'counsellor'")
    _set_roles(ROLES_BEFORE, drop=NEW_CHECK, create=OLD_CHECK)
    op.drop_index("ix_tutor_safety_alerts_created_at", table_name="tutor_safety_alerts")
    op.drop_index("ix_tutor_safety_alerts_learner_id", table_name="tutor_safety_alerts")
    op.drop_index("ix_tutor_safety_alerts_tenant", table_name="tutor_safety_alerts")
    op.drop_table("tutor_safety_alerts")
