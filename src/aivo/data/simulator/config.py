"""`SimulatorConfig`: every knob of the synthetic K-12 cohort, validated on construction.

The defaults are synthetic assumptions chosen to give realistic-looking data (success rates
around 0.6-0.7, visible learning and forgetting, measurable accommodation effects); they are
not estimates from any real population. docs/data.md gives the model's equations.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

from aivo.data.schema import TIMESTAMP_YEARS
from aivo.errors import ConfigError


@dataclass(frozen=True)
class ItemTypeSpec:
    guessing: float  # 3PL lower asymptote c: chance of a right answer with no knowledge
    median_time_s: float  # median response time of a typical learner at matched difficulty


# Item types. Guessing is high only where answers can be picked from options.
DEFAULT_ITEM_TYPES: dict[str, ItemTypeSpec] = {
    "multiple_choice": ItemTypeSpec(guessing=0.25, median_time_s=25.0),
    "short_answer": ItemTypeSpec(guessing=0.02, median_time_s=40.0),
    "word_problem": ItemTypeSpec(guessing=0.02, median_time_s=75.0),
    "long_reading": ItemTypeSpec(guessing=0.20, median_time_s=120.0),  # passage + option questions
    "multi_step": ItemTypeSpec(guessing=0.02, median_time_s=90.0),
    "timed_drill": ItemTypeSpec(guessing=0.05, median_time_s=8.0),  # fluency under a time limit
}

# Share of each item type among a subject's items.
DEFAULT_TYPE_MIX: dict[str, dict[str, float]] = {
    "math": {"multiple_choice": 0.25, "short_answer": 0.25, "word_problem": 0.20, "multi_step": 0.15,
             "timed_drill": 0.15},
    "reading": {"multiple_choice": 0.30, "short_answer": 0.25, "long_reading": 0.35, "timed_drill": 0.10},
    "science": {"multiple_choice": 0.35, "short_answer": 0.20, "long_reading": 0.15, "word_problem": 0.10,
                "multi_step": 0.20},
}

# Share of learners per accommodation profile.
DEFAULT_ACCOMMODATION_RATES: dict[str, float] = {
    "none": 0.70, "adhd": 0.10, "dyslexia": 0.08, "autism": 0.04, "anxiety": 0.08,
}

# Logit offsets on success by profile and item type (what a global model cannot see directly):
# dyslexia hurts long reading and word problems, ADHD hurts multi-step work, anxiety hurts timed
# items, autism hurts the implicit language of word problems.
DEFAULT_ACCOMMODATION_EFFECTS: dict[str, dict[str, float]] = {
    "none": {},
    "adhd": {"multi_step": -1.0, "long_reading": -0.5, "word_problem": -0.3},
    "dyslexia": {"long_reading": -1.3, "word_problem": -0.8, "timed_drill": -0.4},
    "autism": {"word_problem": -0.7, "long_reading": -0.3},
    "anxiety": {"timed_drill": -1.3, "multi_step": -0.3},
}

# Offsets on log response time by profile and item type (e.g. dyslexia: slower reading).
DEFAULT_ACCOMMODATION_TIME_EFFECTS: dict[str, dict[str, float]] = {
    "none": {},
    "adhd": {"multiple_choice": -0.2, "multi_step": 0.2},
    "dyslexia": {"long_reading": 0.5, "word_problem": 0.3},
    "autism": {"short_answer": 0.15},
    "anxiety": {"timed_drill": 0.3, "multi_step": 0.1},
}


def _mapping_field(default: dict) -> Any:
    """A dataclass field defaulting to a fresh copy of `default` (one level deep)."""
    return field(default_factory=lambda: {k: (dict(v) if isinstance(v, dict) else v)
                                          for k, v in default.items()})


@dataclass(frozen=True)
class SimulatorConfig:
    num_learners: int = 1000
    interactions_per_learner: int = 100

    # --- curriculum ------------------------------------------------------------------------
    subjects: tuple[str, ...] = ("math", "reading", "science")
    grades: tuple[int, ...] = tuple(range(13))  # 0 = kindergarten .. 12
    skills_per_grade: int = 8  # per subject; a prerequisite chain in teaching order
    items_per_skill: int = 10
    extra_prerequisite_rate: float = 0.3  # chance a skill also needs an earlier, non-adjacent skill
    multi_skill_rate: float = 0.2  # chance an item also exercises one of its skill's prerequisites
    skill_difficulty_start: float = -1.0  # difficulty of a grade's first skill (logits)...
    skill_difficulty_span: float = 2.0  # ...rising by this much to its last skill
    skill_difficulty_sd: float = 0.3
    item_difficulty_sd: float = 0.5  # item b around its skill's difficulty
    discrimination_log_sd: float = 0.25  # item a ~ lognormal around 1
    max_slip: float = 0.10  # item slip ~ U(0, max_slip): chance a knower still errs
    item_types: Mapping[str, ItemTypeSpec] = _mapping_field(DEFAULT_ITEM_TYPES)
    type_mix: Mapping[str, Mapping[str, float]] = _mapping_field(DEFAULT_TYPE_MIX)

    # --- learners --------------------------------------------------------------------------
    ability_sd: float = 1.0  # general ability g_i
    skill_ability_sd: float = 0.4  # per-skill deviation s_ik
    prior_grade_bonus: float = 1.0  # skills of earlier grades were taught already
    learning_rate: float = 0.3  # mean eta_i: logits gained per practice at full rate
    learning_rate_log_sd: float = 0.3
    prerequisite_floor: float = 0.3  # kappa: share of the gain reached with no prerequisite mastery
    error_learning_factor: float = 0.5  # gamma: a wrong answer teaches this share of a right one
    learning_headroom: float = 1.5  # gains halve once ability is this far above the skill difficulty
    forgetting_days: float = 30.0  # mean tau_i: e-folding time of learned gains
    forgetting_log_sd: float = 0.4
    speed_sd: float = 0.25  # learner offset on log response time
    response_time_sd: float = 0.35  # per-answer noise on log response time
    personal_type_sd: float = 0.4  # idiosyncratic per-learner, per-item-type logit offset
    accommodation_rates: Mapping[str, float] = _mapping_field(DEFAULT_ACCOMMODATION_RATES)
    accommodation_effects: Mapping[str, Mapping[str, float]] = _mapping_field(DEFAULT_ACCOMMODATION_EFFECTS)
    accommodation_time_effects: Mapping[str, Mapping[str, float]] = _mapping_field(
        DEFAULT_ACCOMMODATION_TIME_EFFECTS)

    # --- practice (item selection and timing) ----------------------------------------------
    review_rate: float = 0.15  # chance a step reviews an earlier skill of the chain
    remediation_rate: float = 0.5  # after 2+ errors in a row, chance to practice a prerequisite
    mastery_streak: int = 3  # right answers in a row that move a learner to the next skill...
    min_attempts_per_skill: int = 3  # ...after at least this many attempts on it
    max_attempts_per_skill: int = 10  # move on anyway after this many
    session_length: float = 10.0  # mean interactions per session (geometric)
    session_gap_days: float = 2.0  # mean days between sessions (exponential)
    start_date: str = "2024-09-02"  # first possible session (UTC); learners start within a week

    def __post_init__(self) -> None:
        def fail(message: str) -> None:
            raise ConfigError(f"SimulatorConfig: {message}")

        for name in ("num_learners", "interactions_per_learner", "skills_per_grade", "items_per_skill",
                     "mastery_streak", "min_attempts_per_skill", "max_attempts_per_skill"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                fail(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.max_attempts_per_skill < self.min_attempts_per_skill:
            fail("max_attempts_per_skill must be at least min_attempts_per_skill")
        object.__setattr__(self, "subjects", tuple(self.subjects))
        object.__setattr__(self, "grades", tuple(sorted(int(g) for g in self.grades)))
        if not self.subjects or len(set(self.subjects)) != len(self.subjects):
            fail(f"subjects must be a non-empty list without repeats, got {self.subjects}")
        if not self.grades or len(set(self.grades)) != len(self.grades) or not all(
                0 <= g <= 12 for g in self.grades):
            fail(f"grades must be distinct values in 0..12 (0 = K), got {self.grades}")
        for name in ("extra_prerequisite_rate", "multi_skill_rate", "prerequisite_floor",
                     "error_learning_factor", "review_rate", "remediation_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                fail(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.max_slip < 0.5:
            fail(f"max_slip must be in [0, 0.5), got {self.max_slip}")
        for name in ("skill_difficulty_sd", "item_difficulty_sd", "discrimination_log_sd", "ability_sd",
                     "skill_ability_sd", "prior_grade_bonus", "learning_rate", "learning_rate_log_sd",
                     "forgetting_log_sd", "speed_sd", "response_time_sd", "personal_type_sd",
                     "learning_headroom"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                fail(f"{name} must be a finite number >= 0, got {value!r}")
        for name in ("forgetting_days", "session_length", "session_gap_days"):
            if not getattr(self, name) > 0:
                fail(f"{name} must be > 0, got {getattr(self, name)}")
        if self.session_length < 1:
            fail(f"session_length must be at least 1 interaction, got {self.session_length}")
        try:
            start = date.fromisoformat(self.start_date)
        except (TypeError, ValueError):
            fail(f"start_date must be an ISO date like 2024-09-02, got {self.start_date!r}")
        first, last = TIMESTAMP_YEARS
        if not first <= start.year <= last:
            fail(f"start_date must lie in the years {first}..{last} (the timestamps every edge accepts), "
                 f"got {self.start_date!r}")
        self._check_tables(fail)

    def _check_tables(self, fail) -> None:
        for name, spec in self.item_types.items():
            if not (0.0 <= spec.guessing < 1.0 and spec.median_time_s > 0):
                fail(f"item type {name!r}: guessing must be in [0, 1) and median_time_s > 0")
        for subject in self.subjects:
            mix = self.type_mix.get(subject)
            if not mix:
                fail(f"type_mix has no item-type mix for subject {subject!r}")
            unknown = [t for t in mix if t not in self.item_types]
            if unknown:
                fail(f"type_mix[{subject!r}] names unknown item type(s) {unknown}")
            if any(w < 0 for w in mix.values()) or sum(mix.values()) <= 0:
                fail(f"type_mix[{subject!r}] weights must be >= 0 with a positive sum")
        rates = self.accommodation_rates
        if not rates or any(r < 0 for r in rates.values()) or not math.isclose(sum(rates.values()), 1.0,
                                                                                 abs_tol=1e-6):
            fail(f"accommodation_rates must be >= 0 and sum to 1, got {dict(rates)}")
        for table_name in ("accommodation_effects", "accommodation_time_effects"):
            table = getattr(self, table_name)
            for profile, effects in table.items():
                if profile not in rates:
                    fail(f"{table_name} names profile {profile!r}, which has no accommodation rate")
                unknown = [t for t in effects if t not in self.item_types]
                if unknown:
                    fail(f"{table_name}[{profile!r}] names unknown item type(s) {unknown}")

    @property
    def profiles(self) -> tuple[str, ...]:
        return tuple(self.accommodation_rates)

    @property
    def item_type_names(self) -> tuple[str, ...]:
        return tuple(self.item_types)

    def to_dict(self) -> dict:
        """Plain JSON-able dict (for summaries and reproducibility)."""
        return asdict(self)
