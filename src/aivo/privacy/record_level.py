"""Record-level epsilon: a learner's local DP-SGD sessions (their `dp` histories) composed by the
accountant. Reported next to the user-level figure of the ledger, never added to it."""

from __future__ import annotations

import math
from collections.abc import Sequence

import sqlalchemy as sa

from aivo.privacy.accountants import epsilon_for
from aivo.registry.tables import Learner, LearnerModel, TrainingSession


def _finite(value: float) -> float | None:
    return None if math.isinf(value) else round(value, 6)


def record_level_epsilons(*, session, learner_ids: Sequence[str] | None, delta: float, accountant: str,
                          kind: str = "brain") -> dict[str, dict]:
    """learner -> {"sessions": n, "epsilon": composed over every DP-SGD session} (learners with DP-SGD only)."""
    ts, lm, ln = TrainingSession.__table__, LearnerModel.__table__, Learner.__table__
    stmt = (sa.select(ln.c.pseudonym, ts.c.dp).join(lm, lm.c.id == ts.c.learner_model_id)
            .join(ln, ln.c.id == lm.c.learner_id)
            .where(ts.c.epsilon_spent.is_not(None), lm.c.kind == kind).order_by(ts.c.id))
    histories: dict[str, list] = {}
    counts: dict[str, int] = {}
    if learner_ids is None:
        rows = list(session.execute(stmt))
    else:
        rows = []
        ids = list(learner_ids)
        for start in range(0, len(ids), 500):
            rows.extend(session.execute(stmt.where(ln.c.pseudonym.in_(ids[start:start + 500]))))
    for pseudonym, dp in rows:
        histories.setdefault(pseudonym, []).extend((dp or {}).get("history", []))
        counts[pseudonym] = counts.get(pseudonym, 0) + 1
    return {lid: {"sessions": counts[lid],
                  "epsilon": _finite(epsilon_for(history=h, delta=delta, accountant=accountant)) if h else None}
            for lid, h in histories.items()}
