"""Recommendations for one learner: history from the registry, predictions from the Main Brain
(the learner's personalized model once clones serve it), decisions from the policy."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from aivo.brain.bundle import TrainedBrain
from aivo.brain.catalog import catalog_frame
from aivo.brain.curriculum import CurriculumKnowledge
from aivo.brain.policies import (
    DEFAULT_POLICY,
    NO_SKILL,
    SERVED_POLICIES,
    LearnerStates,
    Policy,
    PolicyCatalog,
    StepInput,
)
from aivo.brain.recommend import PolicyConfig, Recommendation
from aivo.data.schema import split_skills
from aivo.brain.learner_history import LearnerHistory
from aivo.errors import ConfigError, DataError, NotFoundError
from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.config import Settings
from aivo.data.schema import InteractionLog
from aivo.personalization.serving import brain_for_learner
from aivo.registry import Registry, load_interactions_after
from aivo.registry.interactions import StoredRow
from aivo.services.recommendation_engine import (
    GRADES_ABOVE,
    GRADES_BELOW,
    BrainServing,
    LearnerCache,
    _Learner,
    candidate_mask,
    recommend_from_history,
)
from aivo.registry.tables import ApiKeyLearner, Interaction, Learner, LearnerModel, MainModelVersion


def policy_from_settings(settings: Settings, *, num_items: int = 5) -> PolicyConfig:
    return PolicyConfig(target_success=settings.target_success, level_up=settings.mastery_level_up,
                        level_down=settings.mastery_level_down, num_items=num_items)


def candidate_items(catalog: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    """The catalog items that suit this learner: the subjects they study and a band around their
    grade, when the data has those columns. A new learner (or a filter matching nothing) gets
    the whole catalog."""
    learner = LearnerHistory.from_frame(history.sort_values("order")) if len(history) else None
    if learner is None:
        return catalog
    return catalog.loc[candidate_mask(catalog, learner.subjects(), learner.last_grade())]


def served_policy(name: str | None, settings: Settings | None = None) -> str:
    """The policy a recommendation uses: `name`, else `AIVO_RECOMMENDATION_POLICY`, else the
    default (aivo-gain). Names the API cannot serve raise `ConfigError`."""
    chosen = name or (settings.recommendation_policy if settings is not None else None) or DEFAULT_POLICY
    if chosen not in SERVED_POLICIES:
        raise ConfigError(f"unknown recommendation policy {chosen!r}; the API serves: {', '.join(SERVED_POLICIES)} "
                          "(the baselines of `aivo evaluate-policy` are not served)")
    return chosen


# --- policies over the brain's catalog ---------------------------------------------------------

_policy_catalogs: dict[int, tuple[Any, PolicyCatalog]] = {}


def policy_catalog(brain: TrainedBrain, knowledge: CurriculumKnowledge | None = None) -> PolicyCatalog:
    """The brain's item catalog as the policies index it, with the teaching order (and BKT
    parameters) learned from its training log (`brain.info["curriculum"]`, or `knowledge`).
    A brain without curriculum knowledge orders each subject and grade's skills by id."""
    rows = brain.info.get("item_catalog")
    from_brain = knowledge is None
    if from_brain:
        cached = _policy_catalogs.get(id(rows))
        if cached is not None and cached[0] is rows:
            return cached[1]
        stored = brain.info.get("curriculum")
        knowledge = CurriculumKnowledge.from_dict(stored) if stored else None
    items = catalog_frame(brain)
    first = [(split_skills(s) or [s])[0] for s in items["skill_ids"].astype(str)]
    subjects_col = items["subject"].astype("string").fillna("").to_numpy(dtype=object) \
        if "subject" in items.columns else np.full(len(items), "", dtype=object)
    grades_col = (items["grade"].astype("Float64").fillna(-1).to_numpy(dtype=np.float64).astype(np.int64)
                  if "grade" in items.columns else np.full(len(items), -1, dtype=np.int64))
    if knowledge is not None:
        order = [(info.skill_id, info.subject, -1 if info.grade is None else info.grade) for info in knowledge.skills]
    else:
        view = pd.DataFrame({"skill": first, "subject": subjects_col, "grade": grades_col})
        mode = view.groupby("skill").agg(lambda s: s.mode().iloc[0]).reset_index()
        mode = mode.sort_values(["subject", "grade", "skill"], kind="stable")
        order = list(mode.itertuples(index=False, name=None))
    known = {skill for skill, _, _ in order}
    extra = sorted({s for s in items["skill_ids"].astype(str) for s in (split_skills(s) or [s])} - known)
    order += [(s, "", -1) for s in extra]
    skill_ids = np.array([s for s, _, _ in order], dtype=object)
    index = {s: i for i, s in enumerate(skill_ids)}
    subjects = sorted({str(sub) for _, sub, _ in order} | set(map(str, subjects_col)))
    subject_index = {s: i for i, s in enumerate(subjects)}
    skill_subject = np.array([subject_index[str(sub)] for _, sub, _ in order], dtype=np.int64)
    skill_grade = np.array([g for _, _, g in order], dtype=np.int64)
    position = np.zeros(len(order), dtype=np.int64)
    seen: dict[tuple[int, int], int] = {}
    for i in range(len(order)):
        key = (int(skill_subject[i]), int(skill_grade[i]))
        position[i] = seen.get(key, 0)
        seen[key] = position[i] + 1
    prerequisite = np.full(len(order), NO_SKILL, dtype=np.int64)
    if knowledge is not None:
        for skill, before in knowledge.predecessor().items():
            if skill in index and before in index:
                prerequisite[index[skill]] = index[before]
    else:
        previous: dict[int, int] = {}
        for i in range(len(order)):
            if skill_ids[i] in extra:
                continue
            if int(skill_subject[i]) in previous:
                prerequisite[i] = previous[int(skill_subject[i])]
            previous[int(skill_subject[i])] = i
    bkt = None
    if knowledge is not None and knowledge.bkt is not None:
        fitted = {s: j for j, s in enumerate(knowledge.bkt.skills)}
        take = np.array([fitted.get(s, -1) for s in skill_ids])

        def aligned(values):
            return np.where(take >= 0, np.asarray(values, dtype=np.float64)[np.maximum(take, 0)], np.nan)
        b = knowledge.bkt
        bkt = type(b)(skills=tuple(skill_ids), prior=aligned(b.prior), learn=aligned(b.learn), guess=aligned(b.guess),
                      slip=aligned(b.slip), num_attempts=np.where(take >= 0, np.asarray(b.num_attempts)[
                          np.maximum(take, 0)], 0))
    catalog = PolicyCatalog(
        item_ids=items["item_id"].astype(str).to_numpy(dtype=object),
        item_skill=np.array([index[s] for s in first], dtype=np.int64),
        item_skill_set=[tuple(index[s] for s in (split_skills(v) or [v])) for v in items["skill_ids"].astype(str)],
        item_grade=grades_col, item_subject=np.array([subject_index[str(s)] for s in subjects_col], dtype=np.int64),
        skill_ids=skill_ids, skill_grade=skill_grade, skill_subject=skill_subject, skill_position=position,
        prerequisite=prerequisite, bkt=bkt)
    if from_brain and rows is not None:  # the entry holds `rows`, so its id is not reused
        _policy_catalogs[id(rows)] = (rows, catalog)
        while len(_policy_catalogs) > 8:
            _policy_catalogs.pop(next(iter(_policy_catalogs)))
    return catalog


def candidate_rows(catalog: PolicyCatalog, grade: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, C) catalog rows of each learner's candidates and (N, C) valid flags: the items of the
    grade band that `candidate_items` gives a learner of `grade` who studies every subject."""
    grade = np.asarray(grade, dtype=np.int64)
    bands = {}
    for g in np.unique(grade).tolist():
        rows = np.flatnonzero((catalog.item_grade >= g - GRADES_BELOW) & (catalog.item_grade <= g + GRADES_ABOVE))
        bands[g] = rows if len(rows) else np.arange(catalog.num_items)
    return rows_per_grade(bands, grade)


def rows_per_grade(rows_by_grade: dict[int, np.ndarray], grade: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each learner's catalog rows (those of its grade) as one (N, C) array padded with the grade's
    first row, and the (N, C) flags of the rows that are real."""
    width = max(len(r) for r in rows_by_grade.values())
    out = np.zeros((len(grade), width), dtype=np.int64)
    valid = np.zeros((len(grade), width), dtype=bool)
    for g, rows in rows_by_grade.items():
        learners = grade == g
        out[learners, :len(rows)] = rows
        out[learners, len(rows):] = rows[0]
        valid[learners, :len(rows)] = True
    return out, valid


def next_items(*, policy: Policy, catalog: PolicyCatalog, states: LearnerStates, day: np.ndarray,
               candidates: np.ndarray | None, valid: np.ndarray | None, p_correct: np.ndarray | None,
               rng: np.random.Generator, num_items: int) -> np.ndarray:
    """(N, num_items) catalog rows, best first: the one policy call behind both the
    recommendations API (one learner) and the closed-loop evaluation (many)."""
    step = StepInput(catalog=catalog, states=states, day=np.asarray(day, dtype=np.float64), rng=rng,
                     candidates=candidates, valid=valid, p_correct=p_correct)
    return policy.ranking(step, num_items)


def recommend_with_brain(*, brain: TrainedBrain, learner_id: str, history: InteractionLog,
                         policy: PolicyConfig, now: datetime | None = None,
                         policy_name: str = DEFAULT_POLICY) -> Recommendation:
    """The policy applied to `brain`'s next-step predictions over the learner's candidate items.
    Every policy gives the per-skill decisions of `aivo.brain.recommend`; `aivo-target` ranks the
    next items by closeness to the target success, `aivo-gain` puts its chosen item first."""
    frame = history.frame
    if frame["learner_id"].nunique() > 1:
        raise DataError(f"a recommendation takes one learner's history, got {frame['learner_id'].nunique()} learners")
    learner = LearnerHistory.from_frame(frame.sort_values("order"))
    serving = brain_serving(brain)
    return recommend_from_history(serving=serving, state=serving.new_state(learner), history=learner,
                                  learner_id=learner_id, policy=policy, now=now, policy_name=policy_name)


_servings: "OrderedDict[int, tuple[TrainedBrain, BrainServing]]" = OrderedDict()
_servings_lock = threading.Lock()


def brain_serving(brain: TrainedBrain) -> BrainServing:
    """What serving `brain` needs once, kept for the last few brains."""
    with _servings_lock:
        cached = _servings.get(id(brain))
        if cached is not None and cached[0] is brain:  # the entry holds the brain, so its id is not reused
            _servings.move_to_end(id(brain))
            return cached[1]
    serving = BrainServing(brain, policy_catalog(brain))
    with _servings_lock:
        _servings[id(brain)] = (brain, serving)
        while len(_servings) > 8:
            _servings.popitem(last=False)
    return serving


def serving_brain(*, registry: Registry, learner_id: str) -> TrainedBrain:
    """The model that serves this learner: the active Main Brain, overlaid with the learner's
    personal parameters when an active clone exists (the main model when it is in fallback)."""
    return brain_for_learner(registry=registry, learner_id=learner_id).brain


_learner_caches: dict[int, LearnerCache] = {}


def _learner_cache(settings: Settings) -> LearnerCache:
    size = settings.learner_state_cache_size
    with _servings_lock:
        return _learner_caches.setdefault(size, LearnerCache(max_learners=size))


def _look_up(registry: Registry, learner_id: str, after: int,
             after_count: int | None) -> tuple[Any, list[StoredRow] | None, int]:
    """(lookup row, rows stored after position `after`, rows among them that cannot be read), in
    one transaction. No rows (None) when the learner still has `after_count` interactions, the
    last at `after`. NotFoundError for an unknown learner."""
    def work(session):
        row = session.execute(_LOOKUP, {"pseudonym": learner_id, "key_pk": -1}).first()
        if row is None or (row[3] == after_count and row[4] == after):
            return row, None, 0
        return (row, *load_interactions_after(session=session, learner_pk=row[0], after=after))

    found = registry.run(work, read_only=True)
    if found[0] is None:
        raise NotFoundError(f"learner {learner_id} does not exist")
    return found


def recommend_for_learner(*, registry: Registry, settings: Settings, learner_id: str, num_items: int = 5,
                          clock: Clock = SYSTEM_CLOCK, policy_name: str | None = None,
                          learners: LearnerCache | None = None) -> Recommendation:
    """`learner_id` is the registry pseudonym (see aivo.services.learners.pseudonym_for);
    `policy_name` None: `AIVO_RECOMMENDATION_POLICY` (default aivo-gain); `learners` None: this
    process's cache of learner states.

    The learner's history and model state stay in this process (`AIVO_LEARNER_STATE_CACHE_SIZE`
    learners): a later call reads only the interactions stored since and runs them through the
    model (see aivo.services.recommendation_engine); the answer is the same as from scratch."""
    chosen = served_policy(policy_name, settings)
    config = policy_from_settings(settings, num_items=num_items)
    cache = learners if learners is not None else _learner_cache(settings)
    entry = cache.get(learner_id)
    if entry is not None:
        with entry.lock:
            row, newer, skipped = _look_up(registry, learner_id, entry.history.last_position, entry.count)
            if _identity(row) == entry.key and _brain_key(row) == entry.brain_key and not skipped \
                    and entry.count + (0 if newer is None else len(newer)) == row[3]:
                if newer is not None and len(newer):
                    added = LearnerHistory.from_rows(newer)
                    history = entry.history.concat(added)
                    if history.has_item_type != entry.history.has_item_type:
                        entry.state = entry.serving.new_state(history)  # every row reads its item type anew
                    else:
                        entry.state.append(entry.serving.encode(added, item_types=history.has_item_type))
                    entry.history, entry.count = history, row[3]
                    cache.appended += 1
                else:
                    cache.reused += 1
                return recommend_from_history(serving=entry.serving, state=entry.state, history=entry.history,
                                              learner_id=learner_id, policy=config, now=clock.now(),
                                              policy_name=chosen)
    row, stored, _ = _look_up(registry, learner_id, -1, None)  # everything, from scratch
    if not stored:
        raise DataError("the registry holds no " + ("readable " if row[3] else "")
                        + "interactions for this learner", path="registry")
    serving = brain_serving(serving_brain(registry=registry, learner_id=learner_id))
    entry = _Learner(serving, LearnerHistory.from_rows(stored), row[3], key=_identity(row), brain_key=_brain_key(row))
    cache.rebuilt += 1
    with entry.lock:
        cache.put(learner_id, entry)
        return recommend_from_history(serving=serving, state=entry.state, history=entry.history,
                                      learner_id=learner_id, policy=config, now=clock.now(), policy_name=chosen)


def _identity(row) -> tuple:
    """A learner erased and created again under the same pseudonym is another learner."""
    return row[0], row[-1]


def _brain_key(row) -> tuple:
    """What decides the serving brain: the active version and the learner's personal model."""
    return tuple(row[5:10])


# --- what a cached recommendation depends on (the API's per-process cache) ----------------------

_it = Interaction.__table__
_lm = LearnerModel.__table__
_mv = MainModelVersion.__table__
_l = Learner.__table__
_akl = ApiKeyLearner.__table__


def _of_learner(column, *where):
    return sa.select(column).where(*where).scalar_subquery()


# One round trip for the whole serving decision: the learner (tenant, teacher link) and the
# stamp. Every subquery is served by an index: learners (pseudonym), api_key_learners (pk),
# interactions (learner_id, position), the partial unique index on the active version,
# learner_models (learner_id, kind).
_LOOKUP = sa.select(
    _l.c.id, _l.c.tenant,
    sa.exists().where(_akl.c.api_key_id == sa.bindparam("key_pk"), _akl.c.learner_id == _l.c.id),
    _of_learner(sa.func.count(), _it.c.learner_id == _l.c.id),
    _of_learner(sa.func.max(_it.c.position), _it.c.learner_id == _l.c.id),
    _of_learner(_mv.c.artifact_sha256, _mv.c.status == "active"),
    _of_learner(_mv.c.version, _mv.c.status == "active"),
    *(_of_learner(column, _lm.c.learner_id == _l.c.id, _lm.c.kind == "brain")
      for column in (_lm.c.status, _lm.c.artifact_sha256, _lm.c.updated_at)),
    _l.c.created_at,
).where(_l.c.pseudonym == sa.bindparam("pseudonym"))


@dataclass(frozen=True)
class ServingStamp:
    learner_pk: int
    num_interactions: int
    last_position: int | None
    active_artifact: str | None
    active_version: str | None
    personal_model: str | None

    def key(self) -> tuple[Any, ...]:
        return (self.learner_pk, self.num_interactions, self.last_position, self.active_artifact,
                self.personal_model)


@dataclass(frozen=True)
class ServingLookup:
    tenant: str | None  # None: no such learner
    linked: bool  # on the asking key's class list
    stamp: ServingStamp | None


def serving_lookup(*, registry: Registry, pseudonym: str, key_pk: int) -> ServingLookup:
    """In one round trip: the learner (tenant, on the key's class list) and the stamp of what its
    recommendation depends on (interactions, active version, personal model): the API's cache
    serves an entry only while its stamp is unchanged."""
    row = registry.run(lambda session: session.execute(_LOOKUP, {"pseudonym": pseudonym, "key_pk": key_pk}).first(),
                       read_only=True)
    if row is None:
        return ServingLookup(tenant=None, linked=False, stamp=None)
    pk, tenant, linked, count, last, artifact, version, status, personal_artifact, updated, _ = row
    personal = None if status is None else f"{status}:{personal_artifact or ''}:{updated}"
    stamp = ServingStamp(learner_pk=pk, num_interactions=int(count), last_position=last, active_artifact=artifact,
                         active_version=version, personal_model=personal)
    return ServingLookup(tenant=tenant, linked=bool(linked), stamp=stamp)
