"""API key tables (revision 0003). The repository functions live in `aivo.registry.api_keys`.

A key is stored as the SHA-256 of its token, never the token itself. A teacher key reaches
only the learners linked to it in `api_key_learners` (its class list); the link cascades when
either the key or the learner is deleted, so learner erasure removes it too.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from aivo.registry.tables.base import DEFAULT_TENANT, Base
from aivo.registry.types import UTCDateTime

API_KEY_ROLES = ("admin", "service", "teacher", "counsellor")


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = (
        sa.CheckConstraint("role IN ('admin', 'service', 'teacher', 'counsellor')", name="role"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    key_id: Mapped[str] = mapped_column(sa.String(32), unique=True)  # public part of the token
    token_sha256: Mapped[str] = mapped_column(sa.String(64))  # hex SHA-256 of the whole token
    name: Mapped[str] = mapped_column(sa.String(128), default="")
    role: Mapped[str] = mapped_column(sa.String(16))
    tenant: Mapped[str] = mapped_column(sa.String(64), default=DEFAULT_TENANT, index=True)
    created_by: Mapped[str | None] = mapped_column(sa.String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # updated at most once a minute


class ApiKeyLearner(Base):
    """The learners a teacher key may read (its class list)."""

    __tablename__ = "api_key_learners"

    api_key_id: Mapped[int] = mapped_column(sa.ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True)
    learner_id: Mapped[int] = mapped_column(sa.ForeignKey("learners.id", ondelete="CASCADE"), primary_key=True,
                                            index=True)
