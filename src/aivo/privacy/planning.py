"""What a set of user-level DP settings buys, computed before anything runs.

`plan_privacy` asks the accountant what one round costs a learner, how many rounds a learner
can be eligible for within the budget, and turns the answers into plain-language warnings:
DP switched off, settings that give no meaningful privacy (the seed design's noise
multiplier 0.1 costs epsilon ~350 in five full rounds), or settings where even one round
exceeds the budget.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from aivo.privacy.accountants import epsilon_for, max_steps_within

# Above this epsilon a guarantee says next to nothing: e^10 ~ 22,000x likelihood ratio.
MEANINGLESS_EPSILON = 10.0
# Without a planned number of rounds, a budget that lets a learner contribute to fewer rounds than
# this is worth a warning: with weekly aggregation, such learners stop contributing within weeks.
FEW_ROUNDS = 3


@dataclass(frozen=True)
class PrivacyPlan:
    enabled: bool
    noise_multiplier: float
    sample_rate: float
    clip_norm: float
    delta: float
    epsilon_budget: float
    accountant: str
    epsilon_one_round: float | None  # None when DP is off (unbounded)
    rounds_within_budget: int  # rounds a fresh learner can be eligible for (0 when DP is off)
    epsilon_planned: float | None = None  # after `planned_rounds`, when given
    planned_rounds: int | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def meaningful(self) -> bool:
        return self.enabled and self.epsilon_one_round is not None and self.epsilon_one_round <= MEANINGLESS_EPSILON

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("epsilon_one_round", "epsilon_planned"):
            if out[key] is not None and math.isinf(out[key]):
                out[key] = None
        out["meaningful"] = self.meaningful
        return out


def plan_privacy(*, enabled: bool, noise_multiplier: float, sample_rate: float, clip_norm: float, delta: float,
                 epsilon_budget: float, accountant: str = "rdp", planned_rounds: int | None = None,
                 num_learners: int | None = None) -> PrivacyPlan:
    """The cost of the settings and the warnings a user must see before aggregating."""
    warnings: list[str] = []
    if not enabled:
        warnings.append("differential privacy is OFF: aggregated updates carry no user-level privacy guarantee, "
                        "and every contributing learner's epsilon becomes unbounded")
        return PrivacyPlan(False, noise_multiplier, sample_rate, clip_norm, delta, epsilon_budget, accountant,
                           None, 0, None, planned_rounds, warnings)
    if noise_multiplier == 0:
        warnings.append("noise multiplier 0: no noise is added, so there is no privacy at all")
        return PrivacyPlan(True, noise_multiplier, sample_rate, clip_norm, delta, epsilon_budget, accountant,
                           math.inf, 0, None, planned_rounds, warnings)
    one = epsilon_for(history=[(noise_multiplier, sample_rate, 1)], delta=delta, accountant=accountant)
    rounds = max_steps_within(budget=epsilon_budget, delta=delta, noise_multiplier=noise_multiplier,
                              sample_rate=sample_rate, accountant=accountant)
    planned_eps = None
    if planned_rounds:
        planned_eps = epsilon_for(history=[(noise_multiplier, sample_rate, planned_rounds)], delta=delta,
                                  accountant=accountant)
    if one > MEANINGLESS_EPSILON or (planned_eps is not None and planned_eps > MEANINGLESS_EPSILON):
        worst = max(one, planned_eps or 0.0)
        warnings.append(f"no meaningful privacy: noise multiplier {noise_multiplier:g} at sampling rate "
                        f"{sample_rate:g} gives epsilon {worst:.1f} at delta {delta:g} "
                        f"({'one round' if worst == one else f'{planned_rounds} rounds'}); "
                        f"meaningful guarantees need epsilon of about {MEANINGLESS_EPSILON:g} or less, "
                        f"i.e. a larger noise multiplier (1.0 or more) and/or a smaller sampling rate")
    if one > epsilon_budget:
        warnings.append(f"one round alone costs epsilon {one:.2f}, more than the budget {epsilon_budget:g}: "
                        "no learner can ever contribute with these settings")
    elif planned_rounds and rounds < planned_rounds:
        warnings.append(f"the epsilon budget {epsilon_budget:g} covers {rounds} rounds per learner, fewer than the "
                        f"{planned_rounds} planned: learners stop contributing once their budget is spent")
    elif not planned_rounds and rounds < FEW_ROUNDS:
        warnings.append(f"the epsilon budget {epsilon_budget:g} covers only {rounds} round(s) per learner (one round "
                        f"costs epsilon {one:.2f} at sampling rate {sample_rate:g}): after that a learner never "
                        "contributes again; a smaller sampling rate or a larger noise multiplier buys more rounds")
    if num_learners and delta >= 1.0 / num_learners:
        warnings.append(f"delta {delta:g} is not small next to 1/number of learners ({1.0 / num_learners:.2g}): "
                        "choose delta well below 1/N")
    return PrivacyPlan(True, noise_multiplier, sample_rate, clip_norm, delta, epsilon_budget, accountant, one,
                       rounds, planned_eps, planned_rounds, warnings)


def plan_from_settings(settings, *, planned_rounds: int | None = None, num_learners: int | None = None,
                       **overrides: Any) -> PrivacyPlan:
    """`plan_privacy` with values from `aivo.config.Settings` (keyword overrides win)."""
    values = dict(enabled=settings.enable_differential_privacy, noise_multiplier=settings.noise_multiplier,
                  sample_rate=settings.sampling_rate, clip_norm=settings.clip_norm, delta=settings.delta,
                  epsilon_budget=settings.epsilon_budget, accountant=settings.accountant)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return plan_privacy(planned_rounds=planned_rounds, num_learners=num_learners, **values)
