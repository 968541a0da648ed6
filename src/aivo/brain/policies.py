"""Recommendation policies side by side: what item each of N learners practises next.

A policy sees what a tutoring system could know (never a simulator's hidden truth): the item
catalog and its skills, the curriculum's teaching order, the learners' own answers so far and,
for the AIVO policies, the Main Brain's predicted P(correct) of candidate items. Everything is
vectorized over learners (rows), so a closed-loop evaluation of thousands of learners takes one
call per step, and the same call with one row serves the recommendations API.

Registered policies (`policy_names()`; `build_policy(name)` refuses unknown names):

- `fixed-curriculum`  the learner's grade-level skills in teaching order (subjects interleaved),
                      `items_per_skill` items each, then the same order again;
- `random-in-grade`   a uniformly random item of the learner's grade;
- `mastery-bkt`       mastery learning as cognitive tutors do it: standard BKT fitted per skill
                      on the training history (`aivo.brain.bkt`), the first grade-level skill
                      in teaching order with P(known) < 0.95 is practised, items in turn;
- `aivo-target`       today's AIVO policy (`aivo.brain.recommend`): among the items of the
                      learner's subjects and grade band, the one whose predicted success is
                      closest to the target (0.7), skipping items answered right in the last 10;
- `aivo-gain`         the improved AIVO policy: the grade-level skill with the largest expected
                      gain in mastery under the Main Brain -- headroom (1 - predicted mastery)
                      times readiness (predicted mastery of the skill's prerequisite, from the
                      learned teaching order) -- unless a skill mastered earlier is due for a
                      review before it is predicted to be forgotten (expanding intervals that
                      double after each successful review); within the skill, the item closest to
                      the target success, skipping items answered right recently.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from aivo.brain.bkt import BKTParams
from aivo.brain.memory import MemoryModel
from aivo.errors import ConfigError

NO_SKILL = -1


@dataclass(frozen=True)
class PolicyCatalog:
    """What policies know about the content, as index arrays. Skills are in teaching order
    within each (subject, grade): `skill_position`."""

    item_ids: np.ndarray  # (J,) str
    item_skill: np.ndarray  # (J,) first skill index
    item_skill_set: list[tuple[int, ...]]  # (J,) every skill index of the item
    item_grade: np.ndarray  # (J,) int
    item_subject: np.ndarray  # (J,) subject index
    skill_ids: np.ndarray  # (K,) str
    skill_grade: np.ndarray  # (K,) int
    skill_subject: np.ndarray  # (K,) subject index
    skill_position: np.ndarray  # (K,) rank in teaching order within (subject, grade)
    prerequisite: np.ndarray  # (K,) the skill taught just before (NO_SKILL: none)
    bkt: BKTParams | None = None  # aligned with skill_ids (NaN rows: no parameters)
    skill_items: list[np.ndarray] = field(default_factory=list)  # (K,) item rows of each skill (first skill)

    def __post_init__(self) -> None:
        if not self.skill_items:
            order = np.argsort(self.item_skill, kind="stable")
            bounds = np.searchsorted(self.item_skill[order], np.arange(len(self.skill_ids) + 1))
            object.__setattr__(self, "skill_items", [order[a:b] for a, b in zip(bounds[:-1], bounds[1:])])

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    @property
    def num_skills(self) -> int:
        return len(self.skill_ids)

    def grade_skills(self, grade: int) -> np.ndarray:
        """Grade-level skills in fixed teaching order, subjects interleaved: position 0 of every
        subject, then position 1, ..."""
        rows = np.flatnonzero(self.skill_grade == grade)
        order = np.lexsort((self.skill_subject[rows], self.skill_position[rows]))
        return rows[order]

    def grade_items(self, grade: int) -> np.ndarray:
        return np.flatnonzero(self.item_grade == grade)


@dataclass
class LearnerStates:
    """What the learners have done so far, kept up to date by `record` (one answer per learner
    per step; `day` in days, any origin)."""

    grade: np.ndarray  # (N,) int
    num_skills: int
    num_items: int
    recent_window: int = 10
    attempts: np.ndarray = field(init=False)  # (N, K) attempts on each skill (any of the item's skills)
    last_day: np.ndarray = field(init=False)  # (N, K) day of the last attempt (NaN: never)
    recent_items: np.ndarray = field(init=False)  # (N, W) last W item rows (-1 none), newest last
    recent_correct: np.ndarray = field(init=False)  # (N, W)
    item_attempts: np.ndarray = field(init=False)  # (N, J)
    memory: MemoryModel = field(init=False)  # FSRS stability per (learner, skill): predicted forgetting
    steps: int = 0
    bkt_known: np.ndarray | None = None  # (N, K) P(known) under fitted BKT (mastery-bkt)

    def __post_init__(self) -> None:
        n, k, w = len(self.grade), self.num_skills, self.recent_window
        self.attempts = np.zeros((n, k), dtype=np.int64)
        self.last_day = np.full((n, k), np.nan)
        self.recent_items = np.full((n, w), -1, dtype=np.int64)
        self.recent_correct = np.zeros((n, w), dtype=np.int8)
        self.item_attempts = np.zeros((n, self.num_items), dtype=np.int32)
        self.memory = MemoryModel(n, k)

    @property
    def num_learners(self) -> int:
        return len(self.grade)

    @classmethod
    def from_history(cls, catalog: PolicyCatalog, grade: int, rows: np.ndarray, correct: np.ndarray,
                     day: np.ndarray, *, recent_window: int = 10) -> "LearnerStates":
        """One learner's states after answering catalog rows `rows` in order: the same as
        `record` called once per answer, computed in a few vectorized passes (serving replays a
        stored history on every uncached recommendation). BKT knowledge is not replayed."""
        states = cls(grade=np.array([grade]), num_skills=catalog.num_skills, num_items=catalog.num_items,
                     recent_window=recent_window)
        rows = np.asarray(rows, dtype=np.int64)
        if not len(rows):
            return states
        correct = np.asarray(correct).astype(np.int8)
        day = np.asarray(day, dtype=np.float64)
        sets = [catalog.item_skill_set[r] for r in rows.tolist()]
        owner = np.repeat(np.arange(len(rows)), [len(x) for x in sets])
        skill = np.fromiter((k for x in sets for k in x), dtype=np.int64, count=len(owner))
        states.attempts[0] = np.bincount(skill, minlength=catalog.num_skills)
        last = len(skill) - 1 - np.unique(skill[::-1], return_index=True)[1]
        states.last_day[0, skill[last]] = day[owner[last]]
        # FSRS reviews: the j-th review of every skill at once (skills do not interact)
        occurrence = np.zeros(len(skill), dtype=np.int64)
        order = np.argsort(skill, kind="stable")
        sorted_skill = skill[order]
        starts = np.flatnonzero(np.r_[True, sorted_skill[1:] != sorted_skill[:-1]])
        counts = np.diff(np.r_[starts, len(skill)])
        occurrence[order] = np.arange(len(skill)) - np.repeat(starts, counts)
        for j in range(int(occurrence.max()) + 1):
            at = occurrence == j
            states.memory.review(np.zeros(int(at.sum()), dtype=np.int64), skill[at], correct[owner[at]],
                                 day[owner[at]])
        tail = rows[-recent_window:]
        states.recent_items[0, recent_window - len(tail):] = tail
        states.recent_correct[0, recent_window - len(tail):] = correct[-recent_window:]
        states.item_attempts[0] = np.bincount(rows, minlength=catalog.num_items)
        states.steps = len(rows)
        return states

    def record(self, catalog: PolicyCatalog, rows: np.ndarray, correct: np.ndarray, day: np.ndarray) -> None:
        n = np.arange(self.num_learners)
        correct = np.asarray(correct).astype(np.int8)
        for slot in range(max(len(s) for s in catalog.item_skill_set)):
            skill = np.array([s[slot] if slot < len(s) else NO_SKILL for s in
                              (catalog.item_skill_set[r] for r in rows.tolist())])
            has = skill != NO_SKILL
            rr, ss = n[has], skill[has]
            if self.bkt_known is not None and catalog.bkt is not None:
                b = catalog.bkt
                known = self.bkt_known[rr, ss]
                slip, guess, learn = b.slip[ss], b.guess[ss], b.learn[ss]
                right = correct[has] == 1
                p = known * (1 - slip) + (1 - known) * guess
                post = np.where(right, known * (1 - slip) / np.maximum(p, 1e-9),
                                known * slip / np.maximum(1 - p, 1e-9))
                updated = post + (1 - post) * learn
                self.bkt_known[rr, ss] = np.where(np.isfinite(updated), updated, known)
            self.memory.review(rr, ss, correct[has], np.asarray(day, dtype=np.float64)[has])
            self.attempts[rr, ss] += 1
            self.last_day[rr, ss] = day[has]
        self.recent_items = np.concatenate([self.recent_items[:, 1:], rows[:, None]], axis=1)
        self.recent_correct = np.concatenate([self.recent_correct[:, 1:], correct[:, None]], axis=1)
        self.item_attempts[n, rows] += 1
        self.steps += 1

    def recent_skill_counts(self, catalog: PolicyCatalog) -> np.ndarray:
        """(N, K) how many of the last `recent_window` attempts were on each skill (first skill)."""
        counts = np.zeros((self.num_learners, catalog.num_skills))
        seen = self.recent_items >= 0
        learner = np.repeat(np.arange(self.num_learners), self.recent_window).reshape(self.recent_items.shape)
        np.add.at(counts, (learner[seen], catalog.item_skill[self.recent_items[seen]]), 1.0)
        return counts

    def recently_right(self, rows: np.ndarray) -> np.ndarray:
        """(N, C) whether candidate rows were answered right in the last `recent_window` attempts."""
        hit = np.zeros(rows.shape, dtype=bool)
        for w in range(self.recent_window):
            item, right = self.recent_items[:, w], self.recent_correct[:, w] == 1
            hit |= (rows == item[:, None]) & right[:, None]
        return hit


@dataclass
class StepInput:
    """One step's input to a policy."""

    catalog: PolicyCatalog
    states: LearnerStates
    day: np.ndarray  # (N,) when the next item will be answered (days, same origin as `record`)
    rng: np.random.Generator
    candidates: np.ndarray | None = None  # (N, C) catalog rows the Main Brain scored
    valid: np.ndarray | None = None  # (N, C) bool: padding is False
    p_correct: np.ndarray | None = None  # (N, C) predicted P(correct)


class Policy(ABC):
    name: str
    description: str
    needs_predictions: bool = False
    target_success: float = 0.7

    @abstractmethod
    def choose(self, step: StepInput) -> np.ndarray:
        """(N,) catalog row of each learner's next item."""

    def ranking(self, step: StepInput, num_items: int) -> np.ndarray:
        """(N, num_items) catalog rows, best first (the API's `next_items`); by default the chosen
        item only, repeated when asked for more."""
        return np.repeat(self.choose(step)[:, None], num_items, axis=1)


def _least_practised(item_attempts: np.ndarray, skills: np.ndarray, catalog: PolicyCatalog) -> np.ndarray:
    """(L,) each learner's item of its chosen skill that it practised least (the first such, by
    row: i01, i02, ... in turn). `item_attempts` (L, J)."""
    out = np.empty(len(skills), dtype=np.int64)
    for skill in np.unique(skills):
        learners = np.flatnonzero(skills == skill)
        rows = catalog.skill_items[skill]
        out[learners] = rows[np.argmin(item_attempts[np.ix_(learners, rows)], axis=1)]
    return out


class FixedCurriculum(Policy):
    name = "fixed-curriculum"
    description = "grade-level skills in teaching order, a fixed number of items each, then again"

    def __init__(self, items_per_skill: int = 4):
        if items_per_skill < 1:
            raise ConfigError(f"items_per_skill must be >= 1, got {items_per_skill}")
        self.items_per_skill = items_per_skill

    def choose(self, step: StepInput) -> np.ndarray:
        cat, st = step.catalog, step.states
        out = np.empty(st.num_learners, dtype=np.int64)
        for grade in np.unique(st.grade):
            learners = np.flatnonzero(st.grade == grade)
            skills = cat.grade_skills(int(grade))
            slot = (st.steps // self.items_per_skill) % len(skills)
            chosen = np.full(len(learners), skills[slot])
            out[learners] = _least_practised(st.item_attempts[learners], chosen, cat)
        return out


class RandomInGrade(Policy):
    name = "random-in-grade"
    description = "a uniformly random item of the learner's grade"

    def choose(self, step: StepInput) -> np.ndarray:
        cat, st = step.catalog, step.states
        draw = step.rng.random(st.num_learners)
        out = np.empty(st.num_learners, dtype=np.int64)
        for grade in np.unique(st.grade):
            learners = np.flatnonzero(st.grade == grade)
            items = cat.grade_items(int(grade))
            out[learners] = items[(draw[learners] * len(items)).astype(np.int64)]
        return out


class MasteryBKT(Policy):
    name = "mastery-bkt"
    description = "mastery learning: BKT per skill, next skill in teaching order once P(known) >= 0.95"

    def __init__(self, threshold: float = 0.95):
        if not 0.0 < threshold < 1.0:
            raise ConfigError(f"the mastery threshold must be in (0, 1), got {threshold}")
        self.threshold = threshold

    def choose(self, step: StepInput) -> np.ndarray:
        cat, st = step.catalog, step.states
        if cat.bkt is None or st.bkt_known is None:
            raise ConfigError("mastery-bkt needs BKT parameters fitted on the training history")
        out = np.empty(st.num_learners, dtype=np.int64)
        for grade in np.unique(st.grade):
            learners = np.flatnonzero(st.grade == grade)
            skills = cat.grade_skills(int(grade))
            known = st.bkt_known[np.ix_(learners, skills)]
            open_ = known < self.threshold
            # the first skill not mastered yet; all mastered: the least known one (review)
            first = np.where(open_.any(axis=1), np.argmax(open_, axis=1), np.argmin(known, axis=1))
            out[learners] = _least_practised(st.item_attempts[learners], skills[first], cat)
        return out


class AivoTarget(Policy):
    name = "aivo-target"
    description = "today's AIVO policy: the candidate whose predicted success is closest to the target"
    needs_predictions = True

    def __init__(self, target_success: float = 0.7):
        self.target_success = target_success

    def _gap(self, step: StepInput) -> np.ndarray:
        rows, p, valid = step.candidates, step.p_correct, step.valid
        skip = step.states.recently_right(rows) & valid
        all_skipped = (skip | ~valid).all(axis=1)
        usable = valid & (~skip | all_skipped[:, None])
        return np.where(usable, np.abs(p - self.target_success), np.inf)

    def choose(self, step: StepInput) -> np.ndarray:
        gap = self._gap(step)
        return step.candidates[np.arange(len(gap)), np.argmin(gap, axis=1)]

    def ranking(self, step: StepInput, num_items: int) -> np.ndarray:
        gap = self._gap(step)
        order = np.argsort(gap, axis=1, kind="stable")[:, :num_items]
        return np.take_along_axis(step.candidates, order, axis=1)


class AivoGain(Policy):
    name = "aivo-gain"
    description = ("the improved AIVO policy: largest expected gain in mastery under the Main Brain (headroom x "
                   "prerequisite readiness), reviews before predicted forgetting, item nearest the target success")
    needs_predictions = True

    def __init__(self, target_success: float = 0.7, mastery: float = 0.85, review: bool = True,
                 retention: float = 0.9, spacing: float = 0.5):
        self.target_success, self.mastery, self.review, self.retention = target_success, mastery, review, retention
        self.spacing = spacing  # interleaving: each of the last `recent_window` attempts on a skill scales its gain

    def skill_scores(self, step: StepInput) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per learner: (N, K) predicted mastery now (the Main Brain's mean P(correct) over the
        skill's scored items times the FSRS probability of recall since the skill was last
        practised; NaN: no scored item), (N, K) expected gain of practising it, (N, K) due for
        review (a mastered skill whose probability of recall fell below `retention`)."""
        cat, st = step.catalog, step.states
        n, k = st.num_learners, cat.num_skills
        rows, p, valid = step.candidates, step.p_correct, step.valid
        skill = cat.item_skill[rows]
        sums = np.zeros((n, k))
        counts = np.zeros((n, k))
        learner = np.repeat(np.arange(n), rows.shape[1]).reshape(rows.shape)
        np.add.at(sums, (learner[valid], skill[valid]), p[valid])
        np.add.at(counts, (learner[valid], skill[valid]), 1.0)
        brain = np.where(counts > 0, sums / np.maximum(counts, 1.0), np.nan)
        recall = np.nan_to_num(st.memory.retrievability(step.day), nan=1.0)  # never practised: the Brain alone
        mastery = brain * recall
        pre = cat.prerequisite
        pre_mastery = np.where(pre[None, :] >= 0, mastery[:, np.maximum(pre, 0)], 1.0)
        readiness = np.clip(np.nan_to_num(pre_mastery, nan=1.0) / self.mastery, 0.0, 1.0)
        gain = (1.0 - np.nan_to_num(mastery, nan=1.0)) * readiness * self.spacing ** st.recent_skill_counts(cat)
        due = self.review & (np.nan_to_num(brain, nan=0.0) >= self.mastery) & (recall < self.retention)
        return mastery, gain, due

    def _skill_choice(self, step: StepInput) -> np.ndarray:
        cat, st = step.catalog, step.states
        _, gain, due = self.skill_scores(step)
        recall = np.nan_to_num(st.memory.retrievability(step.day), nan=1.0)
        out = np.empty(st.num_learners, dtype=np.int64)
        for grade in np.unique(st.grade):
            learners = np.flatnonzero(st.grade == grade)
            skills = cat.grade_skills(int(grade))
            if not len(skills):
                out[learners] = -1
                continue
            g = gain[np.ix_(learners, skills)]
            d = due[np.ix_(learners, skills)]
            # a due review first (the one closest to being forgotten), else the largest gain
            # (teaching order on ties)
            forgotten = np.where(d, -recall[np.ix_(learners, skills)], -np.inf)
            pick = np.where(d.any(axis=1), np.argmax(forgotten, axis=1), np.argmax(g, axis=1))
            out[learners] = skills[pick]
        return out

    def _item_gap(self, step: StepInput, skills: np.ndarray) -> np.ndarray:
        cat = step.catalog
        rows, p, valid = step.candidates, step.p_correct, step.valid
        in_skill = valid & (cat.item_skill[rows] == skills[:, None]) & (skills[:, None] >= 0)
        skip = step.states.recently_right(rows) & in_skill
        all_skipped = (~in_skill | skip).all(axis=1)
        usable = in_skill & (~skip | all_skipped[:, None])
        return np.where(usable, np.abs(p - self.target_success), np.inf)

    def candidate_rows(self, catalog: PolicyCatalog, grade: int) -> np.ndarray:
        """The catalog rows whose predictions decide this policy's first choice for a learner of
        `grade` (the items of the grade-level skills and of their prerequisites): scoring only
        these gives the same `choose` as scoring the whole candidate band."""
        skills = self.planned_skills(catalog, grade)
        return np.concatenate([catalog.skill_items[k] for k in skills]) if len(skills) else np.zeros(0, np.int64)

    @staticmethod
    def planned_skills(catalog: PolicyCatalog, grade: int) -> np.ndarray:
        skills = catalog.grade_skills(grade)
        pre = catalog.prerequisite[skills]
        return np.unique(np.concatenate([skills, pre[pre >= 0]]))

    def choose(self, step: StepInput) -> np.ndarray:
        skills = self._skill_choice(step)
        gap = self._item_gap(step, skills)
        missing = ~np.isfinite(gap).any(axis=1)
        if missing.any():  # the chosen skill has no scored item: fall back on today's choice
            fallback = AivoTarget(self.target_success).choose(step)
        chosen = step.candidates[np.arange(len(gap)), np.argmin(gap, axis=1)]
        return np.where(missing, fallback, chosen) if missing.any() else chosen

    def ranking(self, step: StepInput, num_items: int) -> np.ndarray:
        """The chosen item first, then today's ranking without it."""
        first = self.choose(step)
        if num_items == 1:
            return first[:, None]
        rest = AivoTarget(self.target_success).ranking(step, num_items + 1)
        width = min(num_items, max(1, rest.shape[1]))
        out = np.empty((len(first), width), dtype=np.int64)
        for i in range(len(first)):
            others = [r for r in rest[i].tolist() if r != first[i]]
            picked = ([int(first[i])] + others)[:width]
            out[i] = picked + [picked[-1]] * (width - len(picked))  # only when fewer candidates than asked
        return out


_REGISTRY: dict[str, type[Policy]] = {}


def _register(cls: type[Policy]) -> type[Policy]:
    if cls.name in _REGISTRY:
        raise ValueError(f"a policy named {cls.name!r} is already registered")
    _REGISTRY[cls.name] = cls
    return cls


for _cls in (FixedCurriculum, RandomInGrade, MasteryBKT, AivoTarget, AivoGain):
    _register(_cls)

SERVED_POLICIES = ("aivo-gain", "aivo-target")  # the ones the recommendations API can serve
DEFAULT_POLICY = "aivo-gain"


def policy_names() -> list[str]:
    return list(_REGISTRY)


def build_policy(name: str, **options) -> Policy:
    """The policy `name`; an unknown name raises `ConfigError` listing the known ones."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown policy {name!r}; known: {', '.join(_REGISTRY)}")
    try:
        return _REGISTRY[name](**options)
    except TypeError as exc:
        raise ConfigError(f"policy {name!r}: {exc}") from None
