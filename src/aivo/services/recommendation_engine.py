"""Computing a recommendation from arrays, with each learner's model state kept between requests.

`BrainServing` holds what serving one brain needs once (the catalog encoded for the model and
for the policies, candidate sets per subjects and grade). `recommend_from_history` computes one
learner's recommendation from a `LearnerHistory` and that learner's `LearnerModelState`.

`LearnerStates` (per process) keeps, per learner, the history read from the registry and the
model state after it. A later request reads only the rows stored after the cached ones
(`load_interactions_after`) and runs them through the encoder (`LearnerModelState.append`); when
the stored history changed otherwise (rows inserted before the last one, rows gone, rows that
cannot be read back) or the serving brain changed, the learner is read again from scratch. Both
ways give the same numbers: an appended state equals a state built from the whole history (see
aivo.brain.learner_state), so a recommendation does not depend on what was cached before it
(tests/services/test_recommendation_engine.py).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import datetime

import numpy as np
import pandas as pd

from aivo.brain.bundle import TrainedBrain
from aivo.brain.catalog import catalog_frame
from aivo.brain.learner_history import LearnerHistory
from aivo.brain.learner_state import EncodedRows, LearnerModelState, ServingModel
from aivo.brain.policies import LearnerStates as PolicyStates
from aivo.brain.policies import StepInput, build_policy
from aivo.brain.recommend import ItemSuggestion, PolicyConfig, Recommendation, ScoredItems, recommend_scored
from aivo.data.schema import split_skills

GRADES_BELOW = 2  # review content from up to two grades below ...
GRADES_ABOVE = 1  # ... and stretch content one grade above the learner's


def candidate_mask(catalog: pd.DataFrame, subjects: frozenset[str], grade: int | None) -> np.ndarray:
    """(J,) the catalog items that suit a learner: the subjects they study and a band around their
    grade, when the catalog has those columns. No subjects / no grade: no filter on it; a filter
    matching nothing gives the whole catalog."""
    keep = np.ones(len(catalog), dtype=bool)
    if subjects and "subject" in catalog.columns:
        keep &= catalog["subject"].astype(str).isin(subjects).to_numpy()
    if grade is not None and "grade" in catalog.columns:
        keep &= catalog["grade"].between(grade - GRADES_BELOW, grade + GRADES_ABOVE).fillna(False).to_numpy(dtype=bool)
    return keep if keep.any() else np.ones(len(catalog), dtype=bool)


class BrainServing:
    """One brain's catalog, encoded once for the model (`ServingModel`) and the policies."""

    def __init__(self, brain: TrainedBrain, policy_catalog):
        self.brain = brain
        self.items = catalog_frame(brain)
        self.model = ServingModel(brain, self.items)
        self.policy_catalog = policy_catalog
        self.item_ids = self.items["item_id"].astype(str).to_numpy(dtype=object)
        self.skills = [split_skills(s) for s in self.items["skill_ids"].astype(str)]
        self.level = np.asarray(brain.tables.item_level, dtype=np.int64)[self.model.catalog.item] + 1  # 1..10
        self.policy_row = pd.Index(policy_catalog.item_ids).get_indexer(self.item_ids)
        self._policy_index = {item: row for row, item in enumerate(policy_catalog.item_ids.tolist())}
        self._candidates: dict[tuple, np.ndarray] = {}
        self._lock = threading.Lock()

    def candidates(self, history: LearnerHistory) -> np.ndarray:
        """Catalog rows of the learner's candidate items, in catalog order."""
        key = (history.subjects(), history.last_grade()) if len(history) else (frozenset(), None)
        with self._lock:
            rows = self._candidates.get(key)
        if rows is None:
            rows = np.flatnonzero(candidate_mask(self.items, *key))
            with self._lock:
                self._candidates[key] = rows
        return rows

    def new_state(self, history: LearnerHistory) -> LearnerModelState:
        return self.model.new_state(self.encode(history))

    def encode(self, history: LearnerHistory, *, item_types: bool | None = None) -> EncodedRows:
        """`item_types`: whether the whole history has item types (default: this part's)."""
        has_types = history.has_item_type if item_types is None else item_types
        return EncodedRows.encode(self.brain, item_ids=history.item_id, skill_ids=history.skill_ids,
                                  item_types=history.item_type if has_types else None, correct=history.correct)

    def policy_rows(self, item_ids: np.ndarray) -> np.ndarray:
        """(T,) policy catalog rows of items (-1: not in the catalog)."""
        index = self._policy_index
        return np.fromiter((index.get(item, -1) for item in item_ids.tolist()), dtype=np.int64, count=len(item_ids))


def recommend_from_history(*, serving: BrainServing, state: LearnerModelState, history: LearnerHistory,
                           learner_id: str, policy: PolicyConfig, now: datetime | None,
                           policy_name: str) -> Recommendation:
    """The policy applied to the brain's predictions over the learner's candidate items (see
    aivo.services.recommendations.recommend_with_brain)."""
    rows = serving.candidates(history)
    p_correct = state.predict(rows)
    items = ScoredItems(serving.item_ids[rows], [serving.skills[r] for r in rows.tolist()], p_correct,
                        serving.level[rows])
    rec = recommend_scored(learner_id=learner_id, items=items, history=history, config=policy, now=now)
    if policy_name == "aivo-target":
        return rec
    grade = history.last_grade()
    catalog = serving.policy_catalog
    if grade is None or not len(catalog.grade_skills(grade)):
        return rec  # no grade-level skills to plan over: today's ranking
    cand = serving.policy_row[rows]
    keep = cand >= 0
    known_rows = serving.policy_rows(history.item_id)
    known = known_rows >= 0
    states = PolicyStates.from_history(catalog, grade, known_rows[known], history.correct[known],
                                       history.days()[known])
    today = (pd.Timestamp(now).value / 1e9) / 86_400.0 if now is not None else np.nan
    chosen = build_policy(policy_name, target_success=policy.target_success, mastery=policy.level_up)
    step = StepInput(catalog=catalog, states=states, day=np.array([today], dtype=np.float64),
                     rng=np.random.default_rng(0), candidates=cand[keep][None, :],
                     valid=np.ones((1, int(keep.sum())), dtype=bool), p_correct=p_correct[keep][None, :])
    ranking = chosen.ranking(step, policy.num_items)[0]
    by_row = dict(zip(cand[keep].tolist(), np.flatnonzero(keep).tolist()))
    flags = {d.skill_id: d.decision for d in rec.skills}
    out = []
    for rank, row in enumerate(dict.fromkeys(ranking.tolist())):
        at = by_row[row]
        p = float(p_correct[at])
        skills = list(items.skills[at])
        if rank == 0:
            skill = catalog.skill_ids[catalog.item_skill[row]]
            reason = (f"skill {skill} has the largest expected gain in mastery (or is due for review); predicted "
                      f"success {p:.2f} is the closest to the target {policy.target_success:.2f} among its items")
        else:
            reason = f"predicted success {p:.2f} is closest to the target {policy.target_success:.2f}"
        marks = sorted({flags[s] for s in skills if s in flags})
        if marks:
            reason += f"; skill decision {'/'.join(marks)}"
        out.append(ItemSuggestion(str(items.item_id[at]), skills, round(p, 4), int(items.difficulty_level[at]),
                                  reason))
    return Recommendation(rec.learner_id, rec.target_success, out, rec.skills, rec.mastery)


class _Learner:
    def __init__(self, serving: BrainServing, history: LearnerHistory, count: int, *, key: tuple, brain_key: tuple):
        self.serving = serving
        self.key = key  # the learner row's (primary key, created_at)
        self.brain_key = brain_key  # what decided `serving` (active version, personal model)
        self.history = history
        self.count = count  # stored interactions the history was read from
        self.state = serving.new_state(history)
        self.lock = threading.Lock()


class LearnerCache:
    """Per process: each recently served learner's history and model state (LRU)."""

    def __init__(self, max_learners: int):
        self.max_learners = max_learners
        self._entries: OrderedDict[str, _Learner] = OrderedDict()
        self._lock = threading.Lock()
        self.appended = self.rebuilt = self.reused = 0

    def get(self, learner_id: str) -> _Learner | None:
        with self._lock:
            entry = self._entries.get(learner_id)
            if entry is not None:
                self._entries.move_to_end(learner_id)
            return entry

    def put(self, learner_id: str, entry: _Learner) -> None:
        with self._lock:
            self._entries[learner_id] = entry
            self._entries.move_to_end(learner_id)
            while len(self._entries) > self.max_learners:
                self._entries.popitem(last=False)

    def forget(self, learner_id: str) -> None:
        with self._lock:
            self._entries.pop(learner_id, None)

    def __len__(self) -> int:
        return len(self._entries)
