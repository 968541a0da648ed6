"""The synthetic curriculum: subjects x grades, a prerequisite chain of skills per (subject,
grade), and items with IRT parameters (difficulty b, discrimination a, guessing c, slip s).

Skill ids read `math.g3.s05` (kindergarten is `gK`), item ids `math.g3.s05.i07`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from aivo.data.schema import SKILL_SEPARATOR
from aivo.data.simulator.config import SimulatorConfig

NO_SKILL = -1  # padding in the index tables below
MAX_PREREQUISITES = 2  # the previous skill of the chain, and sometimes one earlier skill
MAX_ITEM_SKILLS = 2  # the item's skill, and sometimes one of its prerequisites


def grade_label(grade: int) -> str:
    return "K" if grade == 0 else str(grade)


@dataclass(frozen=True)
class Curriculum:
    subjects: tuple[str, ...]
    grades: tuple[int, ...]
    item_types: pd.DataFrame  # item_type, guessing, median_time_s (row = item-type index)
    skills: pd.DataFrame  # skill_id, subject, grade, position, difficulty, prerequisites (';'-joined ids)
    # item_id, skill_ids, subject, grade, item_type, difficulty (b), discrimination (a), guessing (c), slip:
    items: pd.DataFrame
    # Index tables for the vectorized engine:
    chain: np.ndarray  # (G, S, P) skill index of position p in grade g, subject s (teaching order)
    prerequisite_index: np.ndarray  # (K, MAX_PREREQUISITES) skill indices, NO_SKILL = none
    item_skill_index: np.ndarray  # (J, MAX_ITEM_SKILLS) skill indices, NO_SKILL = none
    item_type_index: np.ndarray  # (J,) row of `item_types`

    @property
    def num_skills(self) -> int:
        return len(self.skills)

    @property
    def num_items(self) -> int:
        return len(self.items)

    def prerequisite_edges(self) -> list[tuple[str, str]]:
        """(prerequisite skill id, skill id) pairs of the prerequisite graph (a DAG)."""
        ids = self.skills["skill_id"].to_numpy()
        return [(ids[p], ids[k]) for k, row in enumerate(self.prerequisite_index) for p in row if p != NO_SKILL]


def build_curriculum(config: SimulatorConfig, rng: np.random.Generator) -> Curriculum:
    """Draw a curriculum. Uses only `rng`, so the same seed gives the same curriculum whatever
    the cohort size."""
    subjects, grades, per_grade = config.subjects, config.grades, config.skills_per_grade
    num_skills = len(subjects) * len(grades) * per_grade
    chain = np.arange(num_skills).reshape(len(grades), len(subjects), per_grade)

    # Skills: difficulty rises along the chain (abilities are relative to the learner's grade).
    position = np.tile(np.arange(per_grade), len(grades) * len(subjects))
    ramp = position / (per_grade - 1) if per_grade > 1 else np.zeros(num_skills)
    skill_difficulty = (config.skill_difficulty_start + config.skill_difficulty_span * ramp
                        + rng.normal(0.0, config.skill_difficulty_sd, num_skills))
    skill_grade = np.repeat(np.array(grades), len(subjects) * per_grade)
    skill_subject = np.tile(np.repeat(np.arange(len(subjects)), per_grade), len(grades))
    skill_ids = np.array([f"{subjects[s]}.g{grade_label(g)}.s{p + 1:02d}"
                          for g, s, p in zip(skill_grade, skill_subject, position)], dtype=object)

    prerequisites = np.full((num_skills, MAX_PREREQUISITES), NO_SKILL, dtype=np.int64)
    extra_draw = rng.random(num_skills)
    extra_pick = rng.random(num_skills)
    for g in range(len(grades)):
        for s in range(len(subjects)):
            for p in range(per_grade):
                k = chain[g, s, p]
                if p > 0:
                    prerequisites[k, 0] = chain[g, s, p - 1]
                    if p >= 2 and extra_draw[k] < config.extra_prerequisite_rate:
                        prerequisites[k, 1] = chain[g, s, int(extra_pick[k] * (p - 1))]
                elif g > 0:  # a grade's first skill builds on the previous grade's last one
                    prerequisites[k, 0] = chain[g - 1, s, per_grade - 1]

    skills = pd.DataFrame({
        "skill_id": pd.array(skill_ids, dtype="string"),
        "subject": pd.array(np.array(subjects, dtype=object)[skill_subject], dtype="string"),
        "grade": skill_grade.astype(np.int64),
        "position": position.astype(np.int64),
        "difficulty": skill_difficulty,
        "prerequisites": pd.array([SKILL_SEPARATOR.join(skill_ids[p] for p in row if p != NO_SKILL)
                                   for row in prerequisites], dtype="string"),
    })

    # Items: each belongs to one skill; some also exercise one of that skill's prerequisites.
    type_names = list(config.item_types)
    num_items = num_skills * config.items_per_skill
    item_primary = np.repeat(np.arange(num_skills), config.items_per_skill)
    item_skills = np.full((num_items, MAX_ITEM_SKILLS), NO_SKILL, dtype=np.int64)
    item_skills[:, 0] = item_primary
    item_prereqs = prerequisites[item_primary]  # (J, MAX_PREREQUISITES)
    num_prereqs = (item_prereqs != NO_SKILL).sum(axis=1)
    wants_second = (rng.random(num_items) < config.multi_skill_rate) & (num_prereqs > 0)
    pick = (rng.random(num_items) * np.maximum(num_prereqs, 1)).astype(np.int64)
    second = item_prereqs[np.arange(num_items), pick]
    item_skills[wants_second, 1] = second[wants_second]

    item_type = np.empty(num_items, dtype=np.int64)
    type_draw = rng.random(num_items)
    item_subject = skill_subject[item_primary]
    for s, subject in enumerate(subjects):
        weights = np.array([config.type_mix[subject].get(t, 0.0) for t in type_names], dtype=np.float64)
        cumulative = np.cumsum(weights / weights.sum())
        rows = item_subject == s
        item_type[rows] = np.minimum(np.searchsorted(cumulative, type_draw[rows], side="right"),
                                     len(type_names) - 1)

    skill_sum = np.where(item_skills != NO_SKILL, skill_difficulty[np.maximum(item_skills, 0)], 0.0).sum(axis=1)
    item_difficulty = skill_sum / (item_skills != NO_SKILL).sum(axis=1) + rng.normal(
        0.0, config.item_difficulty_sd, num_items)
    discrimination = np.clip(np.exp(rng.normal(0.0, config.discrimination_log_sd, num_items)), 0.3, 3.0)
    guessing = np.array([config.item_types[t].guessing for t in type_names])[item_type]
    slip = rng.uniform(0.0, config.max_slip, num_items)
    item_number = np.tile(np.arange(config.items_per_skill), num_skills)
    item_ids = [f"{skill_ids[k]}.i{n + 1:02d}" for k, n in zip(item_primary, item_number)]
    item_skill_ids = [SKILL_SEPARATOR.join(skill_ids[k] for k in row if k != NO_SKILL) for row in item_skills]
    items = pd.DataFrame({
        "item_id": pd.array(item_ids, dtype="string"),
        "skill_ids": pd.array(item_skill_ids, dtype="string"),
        "subject": pd.array(np.array(subjects, dtype=object)[item_subject], dtype="string"),
        "grade": skill_grade[item_primary].astype(np.int64),
        "item_type": pd.array(np.array(type_names, dtype=object)[item_type], dtype="string"),
        "difficulty": item_difficulty,
        "discrimination": discrimination,
        "guessing": guessing,
        "slip": slip,
    })
    item_types = pd.DataFrame({
        "item_type": pd.array(type_names, dtype="string"),
        "guessing": [config.item_types[t].guessing for t in type_names],
        "median_time_s": [config.item_types[t].median_time_s for t in type_names],
    })
    return Curriculum(subjects=tuple(subjects), grades=tuple(grades), item_types=item_types, skills=skills,
                      items=items, chain=chain, prerequisite_index=prerequisites, item_skill_index=item_skills,
                      item_type_index=item_type)
