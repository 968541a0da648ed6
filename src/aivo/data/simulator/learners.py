"""Draw a cohort of learners: grade, accommodation profile, abilities and personal traits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from aivo.data.simulator.config import SimulatorConfig
from aivo.data.simulator.curriculum import Curriculum


@dataclass(frozen=True)
class LearnerTraits:
    """Hidden truth about each learner. N learners, K skills, T item types."""

    grade_index: np.ndarray  # (N,) index into config.grades
    profile_index: np.ndarray  # (N,) index into config.profiles (accommodation)
    general_ability: np.ndarray  # (N,) g_i
    learning_rate: np.ndarray  # (N,) eta_i, logits per practice
    forgetting_days: np.ndarray  # (N,) tau_i, e-folding time of learned gains
    speed: np.ndarray  # (N,) offset on log response time (negative = faster)
    type_offset: np.ndarray  # (N, T) idiosyncratic logit offset per item type, u_it
    initial_ability: np.ndarray  # (N, K) theta0_ik before any practice
    start_day: np.ndarray  # (N,) days after config.start_date of the first session

    @property
    def num_learners(self) -> int:
        return len(self.grade_index)


def learner_ids(num_learners: int) -> np.ndarray:
    """`sim-00000`, ... zero-padded so that string order is numeric order."""
    width = max(5, len(str(num_learners - 1)))
    return np.array([f"sim-{i:0{width}d}" for i in range(num_learners)], dtype=object)


def draw_learners(config: SimulatorConfig, curriculum: Curriculum, rng: np.random.Generator) -> LearnerTraits:
    n = config.num_learners
    num_types = len(curriculum.item_types)
    grade_index = rng.integers(0, len(config.grades), n)
    rates = np.array(list(config.accommodation_rates.values()), dtype=np.float64)
    profile_index = np.minimum(np.searchsorted(np.cumsum(rates / rates.sum()), rng.random(n), side="right"),
                               len(rates) - 1)
    general = rng.normal(0.0, config.ability_sd, n)
    skill_dev = rng.normal(0.0, config.skill_ability_sd, (n, curriculum.num_skills))
    # Skills of earlier grades were taught before the cohort starts: the learner knows them better.
    learner_grade = np.asarray(config.grades)[grade_index]
    skill_grade = curriculum.skills["grade"].to_numpy()
    earlier = skill_grade[None, :] < learner_grade[:, None]  # (N, K)
    initial = general[:, None] + skill_dev + config.prior_grade_bonus * earlier
    # Lognormal traits with the configured mean: exp(N(mu, s)) has mean exp(mu + s^2/2).
    eta_sd = config.learning_rate_log_sd
    learning_rate = config.learning_rate * np.exp(rng.normal(-eta_sd ** 2 / 2, eta_sd, n))
    tau_sd = config.forgetting_log_sd
    forgetting = config.forgetting_days * np.exp(rng.normal(-tau_sd ** 2 / 2, tau_sd, n))
    speed = rng.normal(0.0, config.speed_sd, n)
    type_offset = rng.normal(0.0, config.personal_type_sd, (n, num_types))
    start_day = rng.uniform(0.0, 7.0, n)
    return LearnerTraits(grade_index=grade_index, profile_index=profile_index, general_ability=general,
                         learning_rate=learning_rate, forgetting_days=forgetting, speed=speed,
                         type_offset=type_offset, initial_ability=initial.astype(np.float64),
                         start_day=start_day)


def learners_frame(traits: LearnerTraits, config: SimulatorConfig, curriculum: Curriculum) -> pd.DataFrame:
    """One row per learner: id, grade, accommodation and every personal trait."""
    frame = pd.DataFrame({
        "learner_id": pd.array(learner_ids(traits.num_learners), dtype="string"),
        "grade": np.asarray(config.grades, dtype=np.int64)[traits.grade_index],
        "accommodation": pd.array(np.array(config.profiles, dtype=object)[traits.profile_index],
                                  dtype="string"),
        "general_ability": traits.general_ability,
        "learning_rate": traits.learning_rate,
        "forgetting_days": traits.forgetting_days,
        "speed": traits.speed,
    })
    for t, name in enumerate(curriculum.item_types["item_type"]):
        frame[f"type_offset_{name}"] = traits.type_offset[:, t]
    return frame
