"""The per-learner privacy ledger table (revision 0004; the repository functions live in
`aivo.privacy.ledger`, which owns the accounting).

One row per (learner, model kind). It holds the learner's user-level privacy history as the
accountant composes it: a list of `[noise_multiplier, sample_rate, steps]` entries, one per
run of rounds with identical settings (a round in which the learner was eligible, and so
could have been sampled, is one step). `epsilon` caches the accountant's answer at `delta`;
the history is the truth and the epsilon can be recomputed from it at any delta.

`non_private_rounds` counts rounds the learner contributed to with differential privacy
switched off: those carry no guarantee, so the learner's epsilon is unbounded from then on.

Record-level epsilon (local DP-SGD) is not here: it lives with each training session and is
reported separately, never added to these figures.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from aivo.registry.tables.base import Base
from aivo.registry.types import JSONDict, UTCDateTime


class PrivacyLedgerEntry(Base):
    __tablename__ = "privacy_ledger"
    __table_args__ = (sa.UniqueConstraint("learner_id", "kind"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    learner_id: Mapped[int] = mapped_column(sa.ForeignKey("learners.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(sa.String(32), default="brain")  # which model's aggregation
    accountant: Mapped[str] = mapped_column(sa.String(16))  # rdp | prv | ...
    history: Mapped[list[Any]] = mapped_column(JSONDict, default=list)  # [[sigma, q, steps], ...]
    rounds_eligible: Mapped[int] = mapped_column(sa.Integer, default=0)  # accounted steps in total
    rounds_sampled: Mapped[int] = mapped_column(sa.Integer, default=0)  # rounds whose sample held the learner
    non_private_rounds: Mapped[int] = mapped_column(sa.Integer, default=0)  # contributed without DP
    epsilon: Mapped[float | None] = mapped_column(sa.Float)  # at `delta`, over `history`
    delta: Mapped[float] = mapped_column(sa.Float)
    last_round_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
