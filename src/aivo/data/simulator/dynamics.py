"""The simulator's answer and learning equations, in one place.

`run_practice` (engine.py) draws learners' choices and answers with them; `bayes.py` replays
observed histories through them under many hypotheses about a learner's hidden traits. Both
must use exactly the same equations, so they live here (docs/data.md gives them in full):

    theta_ik(t) = theta0_ik + L_ik * exp(-(t - last_ik) / tau_i)                  (retained ability)
    P(correct)  = c + (1 - c - s) * sigmoid(a * (theta - b) + accommodation[profile, type] + u[type])
    L_ik       <- theta_ik(t) - theta0_ik + eta_i * (1 or gamma) * share
                  * (kappa + (1 - kappa) * M_ik) * (1 - sigmoid(theta_ik(t) - d_k - headroom))

Rows are independent: a row is a learner (in the engine) or one hypothesis about a learner (in
the Bayes predictor). Everything is vectorized over rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aivo.data.simulator.config import SimulatorConfig
from aivo.data.simulator.curriculum import NO_SKILL, Curriculum

SECONDARY_SKILL_SHARE = 0.5  # a two-skill item teaches its second (prerequisite) skill half as much
RT_DIFFICULTY_SLOPE = 0.15  # log-time change per logit of (theta - b): hard items take longer


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _table(rows: tuple[str, ...], cols: tuple[str, ...], values) -> np.ndarray:
    out = np.zeros((len(rows), len(cols)))
    for r, row in enumerate(rows):
        for c, col in enumerate(cols):
            out[r, c] = values.get(row, {}).get(col, 0.0)
    return out


@dataclass(frozen=True)
class Tables:
    """Static arrays of a curriculum and config that the equations read. J items, K skills,
    P accommodation profiles, T item types."""

    discrimination: np.ndarray  # (J,) a
    difficulty: np.ndarray  # (J,) b
    guessing: np.ndarray  # (J,) c
    slip: np.ndarray  # (J,) s
    item_skills: np.ndarray  # (J, 2) skill indices, NO_SKILL = none
    item_type: np.ndarray  # (J,) item-type index
    skill_difficulty: np.ndarray  # (K,) d_k
    prerequisites: np.ndarray  # (K, 2) skill indices, NO_SKILL = none
    effect: np.ndarray  # (P, T) accommodation logit offsets
    time_effect: np.ndarray  # (P, T) accommodation offsets on log response time
    log_median_time: np.ndarray  # (T,)
    prerequisite_floor: float  # kappa
    error_learning_factor: float  # gamma
    learning_headroom: float

    @classmethod
    def build(cls, config: SimulatorConfig, curriculum: Curriculum) -> Tables:
        type_names = tuple(curriculum.item_types["item_type"])
        items = curriculum.items
        return cls(discrimination=items["discrimination"].to_numpy(), difficulty=items["difficulty"].to_numpy(),
                   guessing=items["guessing"].to_numpy(), slip=items["slip"].to_numpy(),
                   item_skills=curriculum.item_skill_index, item_type=curriculum.item_type_index,
                   skill_difficulty=curriculum.skills["difficulty"].to_numpy(),
                   prerequisites=curriculum.prerequisite_index,
                   effect=_table(config.profiles, type_names, config.accommodation_effects),
                   time_effect=_table(config.profiles, type_names, config.accommodation_time_effects),
                   log_median_time=np.log(curriculum.item_types["median_time_s"].to_numpy()),
                   prerequisite_floor=config.prerequisite_floor,
                   error_learning_factor=config.error_learning_factor,
                   learning_headroom=config.learning_headroom)


@dataclass(frozen=True)
class Attempt:
    """One attempt per row: which skills it exercises and the retained abilities on them."""

    item: np.ndarray  # (R,)
    first_skill: np.ndarray  # (R,)
    second_skill: np.ndarray  # (R,) = first_skill when the item has one skill
    has_second: np.ndarray  # (R,) bool
    theta_first: np.ndarray  # (R,)
    theta_second: np.ndarray  # (R,)
    kind: np.ndarray  # (R,) item-type index
    core: np.ndarray  # (R,) a * (theta - b)
    p_true: np.ndarray  # (R,) probability of a right answer


class AbilityState:
    """Initial abilities, learned gains and the day of last practice, per row and skill."""

    def __init__(self, tables: Tables, initial_ability: np.ndarray, learning_rate: np.ndarray,
                 forgetting_days: np.ndarray, *, count_practice: bool = True):
        self.tables = tables
        self.theta0 = initial_ability  # (R, K)
        self.gain = np.zeros_like(initial_ability)  # learned gain L_ik (decays with time since last practice)
        self.last_day = np.zeros_like(initial_ability)  # irrelevant while the gain is 0
        self.count = np.zeros(initial_ability.shape, dtype=np.int32) if count_practice else None
        self.learning_rate = learning_rate  # (R,) eta_i
        self.decay_rate = 1.0 / forgetting_days  # (R,) 1 / tau_i
        self.rows = np.arange(len(initial_ability))

    def retained(self, skill: np.ndarray, day: np.ndarray) -> np.ndarray:
        """theta_ik(t) = theta0_ik + L_ik * exp(-(t - last_ik) / tau_i); `skill` (R,) or (R, k)."""
        who, now, rate = self.rows, day, self.decay_rate
        if skill.ndim == 2:
            who, now, rate = who[:, None], day[:, None], rate[:, None]
        return self.theta0[who, skill] + self.gain[who, skill] * np.exp(-(now - self.last_day[who, skill]) * rate)

    def prerequisite_mastery(self, skill: np.ndarray, day: np.ndarray) -> np.ndarray:
        """M_ik: mean P(success on an average item) over k's prerequisites; 1 without any."""
        pre = self.tables.prerequisites[skill]  # (R, MAX_PREREQUISITES)
        valid = pre != NO_SKILL
        safe = np.where(valid, pre, 0)
        mastery = sigmoid(self.retained(safe, day) - self.tables.skill_difficulty[safe])
        num = valid.sum(axis=1)
        return np.where(num > 0, (mastery * valid).sum(axis=1) / np.maximum(num, 1), 1.0)

    def attempt(self, item: np.ndarray, day: np.ndarray, profile: np.ndarray,
                type_offset: np.ndarray) -> Attempt:
        """The true probability that each row answers `item` right on `day`."""
        t = self.tables
        first_skill = t.item_skills[item, 0]
        has_second = t.item_skills[item, 1] != NO_SKILL
        second_skill = np.where(has_second, t.item_skills[item, 1], first_skill)
        theta_first, theta_second = self.retained(first_skill, day), self.retained(second_skill, day)
        theta = np.where(has_second, 0.5 * (theta_first + theta_second), theta_first)
        kind = t.item_type[item]
        core = t.discrimination[item] * (theta - t.difficulty[item])
        logit = core + t.effect[profile, kind] + type_offset[self.rows, kind]
        p_true = t.guessing[item] + (1.0 - t.guessing[item] - t.slip[item]) * sigmoid(logit)
        return Attempt(item=item, first_skill=first_skill, second_skill=second_skill, has_second=has_second,
                       theta_first=theta_first, theta_second=theta_second, kind=kind, core=core, p_true=p_true)

    def log_response_time_mean(self, attempt: Attempt, profile: np.ndarray, speed: np.ndarray) -> np.ndarray:
        """Mean log response time (seconds) of each row's answer; the answer adds N(0, sd) noise."""
        t = self.tables
        return (t.log_median_time[attempt.kind] + speed + t.time_effect[profile, attempt.kind]
                - RT_DIFFICULTY_SLOPE * np.clip(attempt.core, -3.0, 3.0))

    def learn(self, attempt: Attempt, correct: np.ndarray, day: np.ndarray) -> None:
        """Practice: the gains on the attempt's skill(s) grow, more after a right answer and with
        mastered prerequisites; the skills' forgetting clocks restart at `day`."""
        t, rows = self.tables, self.rows
        taught = np.where(correct, 1.0, t.error_learning_factor) * self.learning_rate
        kappa = t.prerequisite_floor
        updates = []
        for skill_now, theta_now, share in ((attempt.first_skill, attempt.theta_first, 1.0),
                                            (attempt.second_skill, attempt.theta_second, SECONDARY_SKILL_SHARE)):
            headroom = 1.0 - sigmoid(theta_now - t.skill_difficulty[skill_now] - t.learning_headroom)
            boost = taught * share * (kappa + (1.0 - kappa) * self.prerequisite_mastery(skill_now, day)) * headroom
            updates.append((skill_now, theta_now - self.theta0[rows, skill_now] + boost))
        for (skill_now, new_gain), who in zip(updates, (rows, rows[attempt.has_second])):
            skill_now, new_gain = skill_now[who], new_gain[who]
            self.gain[who, skill_now] = new_gain
            self.last_day[who, skill_now] = day[who]
            if self.count is not None:
                self.count[who, skill_now] += 1

    def assign_rows(self, rows: np.ndarray, other: AbilityState, source: np.ndarray) -> None:
        """Rows `rows` take the abilities, gains, clocks and learning traits of `other`'s rows
        `source` (`other` may be this state: the right-hand sides are copies)."""
        for name in ("theta0", "gain", "last_day", "learning_rate", "decay_rate"):
            getattr(self, name)[rows] = getattr(other, name)[source]

    def final_ability(self, day: np.ndarray) -> np.ndarray:
        """(R, K) retained ability on every skill at `day`."""
        return self.theta0 + self.gain * np.exp(-(day[:, None] - self.last_day) * self.decay_rate[:, None])
