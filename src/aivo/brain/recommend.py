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


def skill_mastery(item_predictions: pd.DataFrame) -> dict[str, float]:
    """Mean predicted P(correct) per skill over that skill's candidate items."""
    rows = [(skill, p) for skills, p in zip(item_predictions["skill_ids"], item_predictions["p_correct"])
            for skill in split_skills(skills)]
    if not rows:
        return {}
    frame = pd.DataFrame(rows, columns=["skill", "p"])
    return {str(k): float(v) for k, v in frame.groupby("skill")["p"].mean().items()}


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
    mastery = skill_mastery(item_predictions)
    history = history.sort_values("order") if len(history) else history
    skills_rows = [(skill, row_pos) for row_pos, skills in enumerate(history.get("skill_ids", []))
                   for skill in split_skills(skills)]
    decisions: list[SkillDecision] = []
    by_skill: dict[str, list[int]] = {}
    for skill, pos in skills_rows:
        by_skill.setdefault(skill, []).append(pos)
    correct = history["correct"].to_numpy() if len(history) else np.array([])
    stamps = history["timestamp"] if "timestamp" in history.columns else None
    # Most recently practised skills first.
    for skill in sorted(by_skill, key=lambda s: -by_skill[s][-1]):
        if skill not in mastery:
            continue  # no candidate items left for this skill: nothing to serve
        positions = by_skill[skill]
        recent = correct[positions[-config.recent_window:]]
        days = None
        if stamps is not None and now is not None and pd.notna(stamps.iloc[positions[-1]]):
            days = (pd.Timestamp(now) - stamps.iloc[positions[-1]]).total_seconds() / 86400.0
        recent_acc = float(recent.mean()) if len(recent) else None
        decision, reason = _decide(mastery=mastery[skill], attempts=len(positions), recent_accuracy=recent_acc,
                                   days=days, config=config)
        decisions.append(SkillDecision(skill, decision, round(mastery[skill], 4), len(positions),
                                       None if recent_acc is None else round(recent_acc, 4),
                                       None if days is None else round(days, 2), reason))
    flag = {d.skill_id: d.decision for d in decisions}
    recent_correct = set()
    if len(history):
        tail = history.tail(config.recent_window)
        recent_correct = set(tail.loc[tail["correct"] == 1, "item_id"].astype(str))
    candidates = item_predictions.loc[~item_predictions["item_id"].astype(str).isin(recent_correct)]
    if candidates.empty:
        candidates = item_predictions
    candidates = candidates.assign(
        _gap=(candidates["p_correct"] - config.target_success).abs(),
        _prio=[min(_TIE_PRIORITY[flag.get(s)] for s in split_skills(skills) or [""])
               for skills in candidates["skill_ids"]],
    ).sort_values(["_gap", "_prio", "item_id"], kind="stable").head(config.num_items)
    items = []
    for row in candidates.itertuples(index=False):
        level = getattr(row, "difficulty_level", None)
        skills = split_skills(row.skill_ids)
        flags = sorted({flag[s] for s in skills if s in flag})
        reason = f"predicted success {row.p_correct:.2f} is closest to the target {config.target_success:.2f}"
        if flags:
            reason += f"; skill decision {'/'.join(flags)}"
        items.append(ItemSuggestion(str(row.item_id), skills, round(float(row.p_correct), 4),
                                    None if level is None or pd.isna(level) else int(level), reason))
    return Recommendation(learner_id, config.target_success, items, decisions,
                          {k: round(v, 4) for k, v in sorted(mastery.items())})
