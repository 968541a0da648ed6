"""A second learner model, structurally different from the project's simulator: Bayesian
knowledge tracing with forgetting, memory stability and per-learner learn rates ("bkt-forgetting").

Where the simulator has continuous abilities that grow by deterministic, shrinking increments
and decay smoothly, here each (learner, skill) is in one of two states, known or not, and
everything that happens to it is a random event (docs/data.md, section 4.4):

    P(correct)     = g_j + (1 - s_ij - g_j) * prod over the item's skills k of P(known_ik(t))
    P(known(t))    = known * exp(-(t - last_ik) / S_ik)              forgetting, stability S (days)
    unknown -> known with probability T_i * w * (u + (1 - u) * prod over prerequisites p of P(known_ip(t)))
    known, practised: S_ik <- S_ik * (1 + growth * (1 - R)),  R = exp(-(t - last_ik) / S_ik)

g_j = c_j + (1 - c_j) * guess_floor (c_j the item type's guessing), s_ij = sigmoid(logit(slip)
+ N(0, slip_sd) per item - accommodation effect of the learner's profile on the item's type)
(so the simulator's accommodation table raises slips here), T_i a per-learner learn rate, w = 1
for the item's own skill and `secondary_share` for its prerequisite skill, u = `unready_factor`.
Stability grows most when a known skill is practised just before it would be forgotten (the
spacing effect), and not at all when it is practised again at once: unlike the simulator, *when*
a skill is reviewed matters. Initial knowledge: known with probability
sigmoid(g_i + N(0, skill_sd) + prior_grade_bonus * [skill of an earlier grade] - d_k), and known
skills of earlier grades start with `prior_stability_factor` times the learner's stability.

Latent states are realized when a learner answers: the answer is drawn from its marginal
probability, then the states of the item's skills from their posterior given that answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from aivo.data.simulator.config import SimulatorConfig
from aivo.data.simulator.curriculum import NO_SKILL, Curriculum
from aivo.data.simulator.dynamics import Tables, sigmoid
from aivo.data.simulator.learner_models import (
    LearnerModel,
    Response,
    SimulatedLearners,
    register_learner_model,
    response_times,
)


@dataclass(frozen=True)
class BKTForgettingOptions:
    learn_rate: float = 0.25  # mean T_i: chance one practice teaches an unknown skill (prerequisites known)
    learn_rate_log_sd: float = 0.5  # per-learner spread of T_i (lognormal, clipped to [0.01, 0.9])
    unready_factor: float = 0.25  # u: share of T_i left when no prerequisite is known
    secondary_share: float = 0.5  # a two-skill item teaches its prerequisite skill with this share of T_i
    stability_days: float = 15.0  # mean initial memory stability S (days): P(known after d days) = exp(-d/S)
    stability_log_sd: float = 0.4
    stability_growth: float = 2.0  # S grows by this factor times (1 - recall probability) per practice
    prior_stability_factor: float = 5.0  # skills known from earlier grades are this much more stable
    ability_sd: float = 1.0  # general ability g_i (initial knowledge)
    skill_sd: float = 0.5  # per-skill deviation of initial knowledge
    prior_grade_bonus: float = 2.0  # skills of earlier grades were taught already
    slip: float = 0.08  # typical P(wrong | known)
    slip_sd: float = 0.5  # per-item spread of the slip (logits)
    guess_floor: float = 0.1  # P(right | unknown) above the item type's guessing

    def __post_init__(self) -> None:
        for name in ("learn_rate", "unready_factor", "secondary_share", "slip", "guess_floor"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0 or not math.isfinite(value):
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")
        if self.learn_rate <= 0:
            raise ValueError(f"learn_rate must be > 0, got {self.learn_rate}")
        if self.slip >= 0.5:
            raise ValueError(f"slip must be below 0.5, got {self.slip}")
        for name in ("stability_days", "prior_stability_factor"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        for name in ("learn_rate_log_sd", "stability_log_sd", "stability_growth", "ability_sd", "skill_sd",
                     "prior_grade_bonus", "slip_sd"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


class BKTForgettingLearners(SimulatedLearners):
    def __init__(self, options: BKTForgettingOptions, config: SimulatorConfig, curriculum: Curriculum,
                 rng: np.random.Generator):
        o, n, k = options, config.num_learners, curriculum.num_skills
        self.options, self.config, self.curriculum = o, config, curriculum
        self.tables = tables = Tables.build(config, curriculum)
        self.grade_index = rng.integers(0, len(config.grades), n)
        rates = np.array(list(config.accommodation_rates.values()), dtype=np.float64)
        self.profile_index = np.minimum(np.searchsorted(np.cumsum(rates / rates.sum()), rng.random(n), side="right"),
                                        len(rates) - 1)
        self.general_ability = rng.normal(0.0, o.ability_sd, n)
        self.learn_rate = np.clip(o.learn_rate * np.exp(rng.normal(-o.learn_rate_log_sd ** 2 / 2,
                                                                     o.learn_rate_log_sd, n)), 0.01, 0.9)
        self.base_stability = o.stability_days * np.exp(rng.normal(-o.stability_log_sd ** 2 / 2, o.stability_log_sd, n))
        self.speed = rng.normal(0.0, config.speed_sd, n)
        self.start_day = rng.uniform(0.0, 7.0, n)
        earlier = curriculum.skills["grade"].to_numpy()[None, :] < np.asarray(config.grades)[self.grade_index][:, None]
        logit_known = (self.general_ability[:, None] + rng.normal(0.0, o.skill_sd, (n, k))
                       + o.prior_grade_bonus * earlier - tables.skill_difficulty[None, :])
        self.known = rng.random((n, k)) < sigmoid(logit_known)
        self.stability = np.where(self.known & earlier, o.prior_stability_factor, 1.0) * self.base_stability[:, None]
        self.last_day = np.repeat(self.start_day[:, None], k, axis=1)
        self.count = np.zeros((n, k), dtype=np.int32)
        item_dev = rng.normal(0.0, o.slip_sd, curriculum.num_items)
        # (P, J) slip of each profile on each item: an accommodation effect (negative logits) raises it.
        self.slip = sigmoid(_logit(o.slip) + item_dev[None, :] - tables.effect[:, tables.item_type])
        self.guess = tables.guessing + (1.0 - tables.guessing) * o.guess_floor  # (J,)
        self.rows = np.arange(n)

    # --- hidden truth ---------------------------------------------------------------------
    def _recall(self, skill: np.ndarray, day: np.ndarray) -> np.ndarray:
        """P(known) of rows' skill at day (expected over forgetting), skill (N,)."""
        r = self.rows
        decay = np.exp(-np.maximum(day - self.last_day[r, skill], 0.0) / self.stability[r, skill])
        return self.known[r, skill] * decay

    def _item_parts(self, item: np.ndarray, day: np.ndarray):
        first = self.tables.item_skills[item, 0]
        has_second = self.tables.item_skills[item, 1] != NO_SKILL
        second = np.where(has_second, self.tables.item_skills[item, 1], first)
        q1 = self._recall(first, day)
        q2 = np.where(has_second, self._recall(second, day), 1.0)
        slip = self.slip[self.profile_index, item]
        guess = self.guess[item]
        return first, second, has_second, q1, q2, slip, guess

    def probability(self, item: np.ndarray, day: np.ndarray) -> np.ndarray:
        _, _, _, q1, q2, slip, guess = self._item_parts(item, day)
        return guess + (1.0 - slip - guess) * q1 * q2

    def respond(self, item: np.ndarray, day: np.ndarray, rng: np.random.Generator) -> Response:
        n, o, r = len(item), self.options, self.rows
        first, second, has_second, q1, q2, slip, guess = self._item_parts(item, day)
        p_true = guess + (1.0 - slip - guess) * q1 * q2
        correct = rng.random(n) < p_true
        core = np.log(np.clip(p_true, 1e-6, 1 - 1e-6) / np.clip(1 - p_true, 1e-6, 1))
        response_time = response_times(self.tables, kind=self.tables.item_type[item], profile=self.profile_index,
                                       speed=self.speed, core=core, sd=self.config.response_time_sd, rng=rng)
        # Realize the item's skills' states from their posterior given the answer: joint states
        # (1,1), (1,0), (0,1), (0,0); the answer's likelihood is (1-s) or s when both are known,
        # else g or (1-g).
        prior = np.stack([q1 * q2, q1 * (1 - q2), (1 - q1) * q2, (1 - q1) * (1 - q2)], axis=1)  # (N, 4)
        both = np.where(correct, 1.0 - slip, slip)
        other = np.where(correct, guess, 1.0 - guess)
        posterior = prior * np.stack([both, other, other, other], axis=1)
        posterior /= posterior.sum(axis=1, keepdims=True)
        draws = rng.random((n, 3))
        state = (draws[:, :1] > np.cumsum(posterior, axis=1)[:, :3]).sum(axis=1)  # 0..3
        now_first, now_second = state <= 1, (state == 0) | (state == 2)
        for skill, known_now, share, rows, u in ((first, now_first, 1.0, r, draws[:, 1]),
                                                (second, now_second, o.secondary_share, r[has_second],
                                                 draws[:, 2])):
            skill, known_now, u, when = skill[rows], known_now[rows], u[rows], day[rows]
            ready = self._readiness(rows, skill, when)
            learned = ~known_now & (u < self.learn_rate[rows] * share * (o.unready_factor
                                                                         + (1 - o.unready_factor) * ready))
            recall = np.exp(-np.maximum(when - self.last_day[rows, skill], 0.0) / self.stability[rows, skill])
            grown = self.stability[rows, skill] * (1.0 + o.stability_growth * (1.0 - recall))
            self.stability[rows, skill] = np.where(known_now, grown, self.stability[rows, skill])
            self.known[rows, skill] = known_now | learned
            self.last_day[rows, skill] = when
            self.count[rows, skill] += 1
        return Response(correct=correct, p_true=p_true, response_time_s=response_time)

    def _readiness(self, rows: np.ndarray, skill: np.ndarray, day: np.ndarray) -> np.ndarray:
        """Product over each skill's prerequisites of P(known) at day (1 without any); rows (R,)."""
        pre = self.tables.prerequisites[skill]
        out = np.ones(len(rows))
        for col in range(pre.shape[1]):
            valid = pre[:, col] != NO_SKILL
            p = np.where(valid, pre[:, col], 0)
            decay = np.exp(-np.maximum(day - self.last_day[rows, p], 0.0) / self.stability[rows, p])
            out = out * np.where(valid, self.known[rows, p] * decay, 1.0)
        return out

    def practice_count(self) -> np.ndarray:
        return self.count

    def final_state(self, day: np.ndarray) -> np.ndarray:
        return self.known * np.exp(-np.maximum(day[:, None] - self.last_day, 0.0) / self.stability)

    def traits_frame(self, learner_ids: np.ndarray) -> pd.DataFrame:
        c = self.config
        return pd.DataFrame({
            "learner_id": pd.array(learner_ids, dtype="string"),
            "grade": np.asarray(c.grades, dtype=np.int64)[self.grade_index],
            "accommodation": pd.array(np.array(c.profiles, dtype=object)[self.profile_index], dtype="string"),
            "general_ability": self.general_ability, "learn_rate": self.learn_rate,
            "stability_days": self.base_stability, "speed": self.speed,
        })


@register_learner_model
class BKTForgettingModel(LearnerModel):
    name = "bkt-forgetting"
    options_class = BKTForgettingOptions
    description = ("Bayesian knowledge tracing with forgetting: binary knowledge states, per-learner learn "
                   "rates, prerequisite readiness, memory stability that grows with spaced practice")

    def draw(self, *, config: SimulatorConfig, curriculum: Curriculum,
             rng: np.random.Generator) -> BKTForgettingLearners:
        return BKTForgettingLearners(self.options, config, curriculum, rng)
