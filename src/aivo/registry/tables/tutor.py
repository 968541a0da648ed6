"""The tutor's tables: safety alerts (revision 0006). Repository functions: aivo.tutor.alerts."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from aivo.registry.tables.base import Base
from aivo.registry.types import UTCDateTime

EXCERPT_CHARS = 160  # the longest excerpt an alert keeps (the least text a counsellor needs)


class SafetyAlert(Base):
    __tablename__ = "tutor_safety_alerts"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    tenant: Mapped[str] = mapped_column(sa.String(64), index=True)
    learner_id: Mapped[int | None] = mapped_column(sa.ForeignKey("learners.id", ondelete="CASCADE"), index=True)
    category: Mapped[str] = mapped_column(sa.String(32))
    stage: Mapped[str] = mapped_column(sa.String(16))  # input | output
    detector: Mapped[str] = mapped_column(sa.String(16))  # rules | classifier
    excerpt: Mapped[str] = mapped_column(sa.String(EXCERPT_CHARS))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    acknowledged_by: Mapped[str | None] = mapped_column(sa.String(128))
