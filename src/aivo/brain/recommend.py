"""Recommendation policy: from predicted mastery to what a learner should do next.

Pure functions over the Main Brain's predictions, so the policy is testable without a model:

- `item_predictions`: one row per candidate item with the model's P(correct) if the learner
  answered it next (`item_id`, `skill_ids`, `p_correct`, optional `difficulty_level`).
- `history`: the learner's interactions (schema columns; `timestamp` optional).

Per skill the learner has practised, the decision is taken from the skill's predicted mastery
(mean P(correct) over its items) and its recent record:

- REVIEW     the learner did well on the skill (recent accuracy >= level_up over at least
             `min_attempts` attempts) but the model now predicts mastery more than `review_drop`
             below that; or the learner was on track (recent accuracy >= target_success), the
             skill was last practised more than `review_after_days` ago and mastery is below
             level_up (a skill never learned is not "reviewed": it gets STAY or LEVEL_DOWN);
- LEVEL_UP   mastery >= level_up after at least `min_attempts` attempts: serve harder content;
- LEVEL_DOWN mastery <= level_down: serve easier content;
- STAY       otherwise.

Next items: the items whose predicted success is closest to `target_success` (the zone of
proximal development), skipping items answered correctly in the last `recent_window` attempts;
ties go to skills flagged REVIEW, then LEVEL_DOWN.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from aivo.brain.learner_history import NO_TIME, LearnerHistory
from aivo.data.schema import split_skills

DECISIONS = ("LEVEL_UP", "LEVEL_DOWN", "STAY", "REVIEW")
_TIE_PRIORITY = {"REVIEW": 0, "LEVEL_DOWN": 1, "STAY": 2, "LEVEL_UP": 3, None: 4}


@dataclass(frozen=True)
class PolicyConfig:
    target_success: float = 0.7  # success rate that keeps practice productive, not frustrating
    level_up: float = 0.85
    level_down: float = 0.45
    review_drop: float = 0.10  # predicted mastery this far below a once-good record triggers REVIEW
    review_after_days: float = 14.0
    min_attempts: int = 3  # fewer attempts than this never LEVEL_UP (too little evidence)
    recent_window: int = 10  # attempts considered "recent" for accuracy and for skipping items
    num_items: int = 5

    def __post_init__(self) -> None:
        for name in ("target_success", "level_up", "level_down"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise ValueError(f"{name} must be in (0, 1), got {value}")
        if self.level_down >= self.level_up:
            raise ValueError(f"level_down ({self.level_down}) must be below level_up ({self.level_up})")
        if self.num_items < 1 or self.min_attempts < 0 or self.recent_window < 1:
            raise ValueError("num_items and recent_window must be >= 1, min_attempts >= 0")


@dataclass(frozen=True)
class SkillDecision:
    skill_id: str
    decision: str
    mastery: float  # mean predicted P(correct) over the skill's items, at the next step
    attempts: int
    recent_accuracy: float | None
    days_since_practice: float | None
    reason: str


@dataclass(frozen=True)
class ItemSuggestion:
    item_id: str
    skill_ids: list[str]
    p_correct: float
    difficulty_level: int | None
    reason: str


@dataclass(frozen=True)
class Recommendation:
    learner_id: str
    target_success: float
    next_items: list[ItemSuggestion]
    skills: list[SkillDecision]
    mastery: dict[str, float] = field(default_factory=dict)  # every skill with candidate items

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ScoredItems:
    """Candidate items with the model's P(correct) of each as the learner's next attempt."""

    item_id: np.ndarray  # (C,) str
    skills: list[list[str]]  # (C,) each item's skills
    p_correct: np.ndarray  # (C,) float
    difficulty_level: np.ndarray | None = None  # (C,) int, 1..10

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> "ScoredItems":
        level = None
        if "difficulty_level" in frame.columns:
            level = np.array([None if pd.isna(v) else int(v) for v in frame["difficulty_level"]], dtype=object)
        return cls(frame["item_id"].astype(str).to_numpy(dtype=object),
                   [split_skills(s) for s in frame["skill_ids"]], frame["p_correct"].to_numpy(dtype=np.float64),
                   level)


def skill_mastery(item_predictions: pd.DataFrame) -> dict[str, float]:
    """Mean predicted P(correct) per skill over that skill's candidate items."""
    return _mastery(ScoredItems.from_frame(item_predictions))


def _mastery(items: ScoredItems) -> dict[str, float]:
    index: dict[str, int] = {}
    owner, skill = [], []
    for i, skills in enumerate(items.skills):
        for name in skills:
            owner.append(i)
            skill.append(index.setdefault(name, len(index)))
    if not owner:
        return {}
    skill_arr = np.asarray(skill, dtype=np.int64)
    sums = np.bincount(skill_arr, weights=items.p_correct[np.asarray(owner, dtype=np.int64)], minlength=len(index))
    counts = np.bincount(skill_arr, minlength=len(index))
    return {name: float(sums[i] / counts[i]) for name, i in sorted(index.items())}


def _decide(*, mastery: float, attempts: int, recent_accuracy: float | None, days: float | None,
            config: PolicyConfig) -> tuple[str, str]:
    m = f"predicted mastery {mastery:.2f}"
    if recent_accuracy is not None and attempts >= config.min_attempts \
            and recent_accuracy >= config.level_up and mastery < recent_accuracy - config.review_drop:
        return "REVIEW", (f"{m} is below the learner's recent accuracy {recent_accuracy:.2f} by more than "
                          f"{config.review_drop:.2f}: knowledge may be fading")
    if days is not None and days > config.review_after_days and mastery < config.level_up \
            and recent_accuracy is not None and recent_accuracy >= config.target_success:
        return "REVIEW", (f"last practised {days:.0f} days ago with recent accuracy {recent_accuracy:.2f}, "
                          f"and {m} < {config.level_up:.2f} now")
    if mastery >= config.level_up and attempts >= config.min_attempts:
        return "LEVEL_UP", f"{m} >= {config.level_up:.2f} after {attempts} attempts"
    if mastery <= config.level_down:
        return "LEVEL_DOWN", f"{m} <= {config.level_down:.2f}"
    if mastery >= config.level_up:
        return "STAY", f"{m} is high but only {attempts} attempt(s) (need {config.min_attempts})"
    return "STAY", f"{config.level_down:.2f} < {m} < {config.level_up:.2f}"


def recommend(*, learner_id: str, item_predictions: pd.DataFrame, history: pd.DataFrame,
              config: PolicyConfig = PolicyConfig(), now: datetime | None = None) -> Recommendation:
    """Decide per practised skill and pick the next items. `now` is needed only for REVIEW by age."""
    if item_predictions.empty:
        return Recommendation(learner_id, config.target_success, [], [], {})
    return recommend_scored(learner_id=learner_id, items=ScoredItems.from_frame(item_predictions),
                            history=LearnerHistory.from_frame(history.sort_values("order") if len(history)
                                                              else history),
                            config=config, now=now)


def recommend_scored(*, learner_id: str, items: ScoredItems, history: LearnerHistory,
                     config: PolicyConfig = PolicyConfig(), now: datetime | None = None) -> Recommendation:
    """`recommend` on arrays (what serving calls)."""
    if not len(items.item_id):
        return Recommendation(learner_id, config.target_success, [], [], {})
    mastery = _mastery(items)
    decisions: list[SkillDecision] = []
    by_skill: dict[str, list[int]] = {}
    for pos, skills in enumerate(history.skill_lists()):
        for skill in skills:
            by_skill.setdefault(skill, []).append(pos)
    correct = history.correct.tolist()
    now_ns = pd.Timestamp(now).value if now is not None else None
    # Most recently practised skills first.
    for skill in sorted(by_skill, key=lambda s: -by_skill[s][-1]):
        if skill not in mastery:
            continue  # no candidate items left for this skill: nothing to serve
        positions = by_skill[skill]
        recent = [correct[p] for p in positions[-config.recent_window:]]
        days = None
        stamp = history.time_ns[positions[-1]]
        if now_ns is not None and stamp != NO_TIME:
            days = ((now_ns - int(stamp)) / 1e9) / 86400.0
        recent_acc = sum(recent) / len(recent) if recent else None  # exact: a count over a count
        decision, reason = _decide(mastery=mastery[skill], attempts=len(positions), recent_accuracy=recent_acc,
                                   days=days, config=config)
        decisions.append(SkillDecision(skill, decision, round(mastery[skill], 4), len(positions),
                                       None if recent_acc is None else round(recent_acc, 4),
                                       None if days is None else round(days, 2), reason))
    flag = {d.skill_id: d.decision for d in decisions}
    tail = slice(max(0, len(history) - config.recent_window), len(history))
    recent_correct = set(history.item_id[tail][history.correct[tail] == 1].tolist())
    keep = np.array([item not in recent_correct for item in items.item_id.tolist()], dtype=bool)
    if not keep.any():
        keep[:] = True
    rows = np.flatnonzero(keep)
    gap = np.abs(items.p_correct[rows] - config.target_success)
    if len(rows) > config.num_items:  # only the rows that can rank in the first num_items
        bound = np.partition(gap, config.num_items - 1)[config.num_items - 1]
        rows, gap = rows[gap <= bound], gap[gap <= bound]
    prio = [min(_TIE_PRIORITY[flag.get(s)] for s in items.skills[r] or [""]) for r in rows.tolist()]
    ranked = sorted(range(len(rows)), key=lambda i: (gap[i], prio[i], items.item_id[rows[i]]))[:config.num_items]
    suggestions = []
    for i in ranked:
        r = rows[i]
        p = float(items.p_correct[r])
        level = None if items.difficulty_level is None else items.difficulty_level[r]
        skills = items.skills[r]
        flags = sorted({flag[s] for s in skills if s in flag})
        reason = f"predicted success {p:.2f} is closest to the target {config.target_success:.2f}"
        if flags:
            reason += f"; skill decision {'/'.join(flags)}"
        suggestions.append(ItemSuggestion(str(items.item_id[r]), list(skills), round(p, 4),
                                          None if level is None else int(level), reason))
    return Recommendation(learner_id, config.target_success, suggestions, decisions,
                          {k: round(v, 4) for k, v in mastery.items()})
