"""Privacy report use case (`aivo privacy report`): what AIVO has spent of each learner's privacy, per learner and overall.

Two figures, never added together:

* user-level epsilon (aggregation, the ledger): what the released Main Brain updates reveal
  about whether a learner took part at all;
* record-level epsilon (local DP-SGD, the training sessions): what a learner's own update
  reveals about any one window of their interactions. All of a learner's DP-SGD sessions are
  composed with the accountant (they may train on the same interactions).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import sqlalchemy as sa

from aivo.config import Settings
from aivo.privacy.ledger import get_ledgers, list_ledgers
from aivo.privacy.planning import PrivacyPlan, plan_from_settings
from aivo.privacy.record_level import record_level_epsilons
from aivo.registry import Registry
from aivo.registry.tables import FederatedUpdate


@dataclass
class PrivacyReport:
    settings: dict  # the current plan: budget, delta, accountant, cost of one round, warnings
    overall: dict
    learners: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def privacy_report(*, registry: Registry, plan: PrivacyPlan, learner_ids: Sequence[str] | None = None,
                   limit: int | None = 100, kind: str = "brain") -> PrivacyReport:
    """Per-learner rows (the given learners, or the first `limit` ledgers) and totals over all."""
    delta, accountant, budget = plan.delta, plan.accountant, plan.epsilon_budget
    with registry.session(read_only=True) as session:
        every = list_ledgers(session=session, kind=kind)
        shown = (list(get_ledgers(session=session, learner_ids=learner_ids, kind=kind).values())
                 if learner_ids is not None else every[:limit] if limit is not None else every)
        record = record_level_epsilons(session=session, learner_ids=[r.learner_id for r in shown], delta=delta,
                                       accountant=accountant, kind=kind)
        all_record = record_level_epsilons(session=session, learner_ids=None, delta=delta, accountant=accountant,
                                           kind=kind)
        rounds = session.scalar(sa.select(sa.func.count()).select_from(FederatedUpdate))
    epsilons = np.array([r.epsilon(delta=delta, accountant=accountant) for r in every]) if every else np.zeros(0)
    finite = epsilons[np.isfinite(epsilons)]
    record_values = [v["epsilon"] for v in all_record.values() if v["epsilon"] is not None]
    overall = {
        "federated_rounds": int(rounds or 0),
        "learners_in_ledger": len(every),
        "user_level": {"delta": delta, "accountant": accountant, "budget": budget,
                       "max_epsilon": float(finite.max()) if finite.size else None,
                       "median_epsilon": float(np.median(finite)) if finite.size else None,
                       "mean_epsilon": float(finite.mean()) if finite.size else None,
                       "learners_unbounded": int(np.isinf(epsilons).sum()),
                       "learners_exhausted": int((epsilons >= budget).sum()),
                       "learners_over_80_percent": int((epsilons >= 0.8 * budget).sum())},
        "record_level": {"learners_with_dp_sgd": len(all_record),
                         "max_epsilon": max(record_values) if record_values else None,
                         "note": "local DP-SGD, per window of interactions; reported separately, never added "
                                 "to the user-level figure"},
    }
    rows = []
    for ledger in shown:
        rows.append({"learner_id": ledger.learner_id,
                     "user_level": ledger.to_dict(delta=delta, accountant=accountant, budget=budget),
                     "record_level": record.get(ledger.learner_id, {"sessions": 0, "epsilon": None})})
    if learner_ids is not None:  # learners with DP-SGD sessions but no ledger yet are shown too
        known = {r["learner_id"] for r in rows}
        rows += [{"learner_id": lid, "user_level": None, "record_level": value}
                 for lid, value in record.items() if lid not in known]
    return PrivacyReport(settings=plan.to_dict(), overall=overall, learners=rows, warnings=list(plan.warnings))


def privacy_plan(settings: Settings, **options: Any) -> PrivacyPlan:
    """What the settings' user-level DP costs: epsilon of one round, rounds within the budget,
    warnings (shown before anything runs)."""
    return plan_from_settings(settings, **options)
