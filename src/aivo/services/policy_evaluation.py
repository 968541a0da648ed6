"""Closed-loop evaluation of recommendation policies on simulated learners (`aivo evaluate-policy`).

For each learner model and policy (an arm), the same simulated learners practise N items:

1. a Main Brain was trained beforehand on a separate simulated history of the same learner model
   and curriculum (other learners), with the teaching order and BKT parameters learned from that
   history (`aivo.brain.curriculum`);
2. every step asks the policy for each learner's next item through `next_items` -- the
   service call the recommendations API makes (`aivo.services.recommendations`), fed with the
   Main Brain's predictions for all learners at once (`BatchPredictor`, equal to the API's
   one-learner `predict_next`), and the learners' records so far;
3. the simulated learner answers it from its hidden state (and learns), and the answer is
   recorded, as the interactions API stores it;
4. outcomes come from the hidden truth, never from the model: the expected score on a post-test
   of the learner's grade-level items (every item of the learner's grade, teaching nothing)
   right after N = 50, 100, 200 items and again `delay_days` later (retention), and the number of
   items until each grade-level skill is mastered (true P(correct) >= `mastery_p`, checked every
   `check_every` items).

The first three items are a placement, the same for every policy: the first grade-level skill of
each subject. Sessions (days, hours) are drawn once per learner and shared by all arms, and
every arm uses the same learners and answer seed (paired comparisons).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aivo.brain.batch_predict import BatchPredictor
from aivo.brain.bundle import TrainedBrain
from aivo.brain.catalog import catalog_frame, item_catalog
from aivo.brain.checkpoint import load_checkpoint, save_checkpoint
from aivo.brain.config import BrainConfig
from aivo.brain.curriculum import CurriculumKnowledge, learn_curriculum
from aivo.brain.policies import LearnerStates, build_policy, policy_names
from aivo.brain.train import train_main_brain
from aivo.data.simulator import SimulatorConfig, build_learner_model, simulate_cohort
from aivo.data.simulator.curriculum import Curriculum, build_curriculum
from aivo.data.splits import split_by_learner
from aivo.errors import ConfigError
from aivo.services.recommendations import candidate_rows, next_items, policy_catalog, rows_per_grade
from aivo.services.reports import write_policy_plot

log = logging.getLogger(__name__)

DEFAULT_CHECKPOINTS = (50, 100, 200)
DEFAULT_POLICIES = ("fixed-curriculum", "random-in-grade", "mastery-bkt", "aivo-target", "aivo-gain")
PLACEMENT_ITEMS = 3  # one per subject
ITEM_SECONDS = 60.0  # time from one answer to the next within a session
Progress = Callable[[str, int, int], None]  # (arm, step, steps)


@dataclass(frozen=True)
class PolicyEvaluationSpec:
    policies: tuple[str, ...] = DEFAULT_POLICIES
    learner_models: tuple[str, ...] = ("simulator", "bkt-forgetting")
    num_learners: int = 1000
    checkpoints: tuple[int, ...] = DEFAULT_CHECKPOINTS
    seed: int = 0
    brain_learners: int = 2000  # the separate simulated history the Main Brain is trained on
    brain_interactions: int = 150
    brain_epochs: int = 8
    delay_days: float = 30.0
    mastery_p: float = 0.8
    check_every: int = 5
    learner_model_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    simulator: dict[str, Any] = field(default_factory=dict)  # SimulatorConfig fields (curriculum, sessions)
    policy_learners: dict[str, int] = field(default_factory=dict)  # fewer learners for a costly arm (unpaired then)

    def __post_init__(self) -> None:
        known = policy_names()
        if not self.policies:
            raise ConfigError("name at least one policy")
        unknown = [p for p in self.policies if p not in known]
        if unknown:
            raise ConfigError(f"unknown policy {unknown[0]!r}; known: {', '.join(known)}")
        if not self.learner_models:
            raise ConfigError("name at least one learner model")
        for name in self.learner_models:  # unknown names and invalid options fail here, before any work
            build_learner_model(name, self.learner_model_options.get(name))
        for name, value in self.policy_learners.items():
            if name not in self.policies or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"policy_learners: {name!r} must be an evaluated policy with a positive number")
        for name in ("num_learners", "brain_learners", "brain_interactions", "brain_epochs", "check_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if not self.checkpoints or any(not isinstance(n, int) or n <= 0 for n in self.checkpoints):
            raise ConfigError(f"the numbers of items N must be positive integers, got {list(self.checkpoints)}")
        if min(self.checkpoints) <= PLACEMENT_ITEMS:
            raise ConfigError(f"N must exceed the {PLACEMENT_ITEMS} placement items, got {min(self.checkpoints)}")
        if not 0 < self.mastery_p < 1 or not (self.delay_days >= 0 and math.isfinite(self.delay_days)):
            raise ConfigError("mastery_p must be in (0, 1) and delay_days >= 0")

    @property
    def steps(self) -> int:
        return max(self.checkpoints)

    def learners_for(self, policy: str) -> int:
        return self.policy_learners.get(policy, self.num_learners)


# --- the Main Brain and what it knows, trained on a separate simulated history -------------------

@dataclass
class PreparedBrain:
    brain: TrainedBrain
    knowledge: CurriculumKnowledge
    curriculum: Curriculum
    config: SimulatorConfig
    train_seconds: float
    validation_auc: float | None


def _simulator_config(spec: PolicyEvaluationSpec, num_learners: int, interactions: int) -> SimulatorConfig:
    try:
        return SimulatorConfig(**{**spec.simulator, "num_learners": num_learners,
                                  "interactions_per_learner": interactions})
    except TypeError as exc:
        raise ConfigError(f"simulator settings: {exc}") from None


def prepare_brain(spec: PolicyEvaluationSpec, learner_model: str, *, cache_dir: Path | None = None) -> PreparedBrain:
    """Simulate the training history (seed `spec.seed`), train the Main Brain on it, learn the
    curriculum knowledge; reuse `cache_dir` when it holds the same settings."""
    config = _simulator_config(spec, spec.brain_learners, spec.brain_interactions)
    model = build_learner_model(learner_model, spec.learner_model_options.get(learner_model))
    key = hashlib.sha256(json.dumps({"model": learner_model, "options": asdict(model.options), "seed": spec.seed,
                                     "simulator": spec.simulator,
                                     "n": spec.brain_learners, "m": spec.brain_interactions,
                                     "epochs": spec.brain_epochs}, sort_keys=True, default=str).encode()).hexdigest()[:12]
    folder = Path(cache_dir) / f"brain-{learner_model}-{key}" if cache_dir is not None else None
    curriculum = _curriculum(config, spec.seed)
    if folder is not None and (folder / "knowledge.json").exists():
        brain = load_checkpoint(folder)
        knowledge = CurriculumKnowledge.from_dict(json.loads((folder / "knowledge.json").read_text()))
        meta = json.loads((folder / "training.json").read_text())
        return PreparedBrain(brain, knowledge, curriculum, config, meta["train_seconds"], meta["validation_auc"])
    cohort = simulate_cohort(config=config, seed=spec.seed, learner_model=model)
    split = split_by_learner(cohort.log, fractions=(0.9, 0.1, 0.0), seed=spec.seed)
    began = time.perf_counter()
    result = train_main_brain(train=split.train, validation=split.validation,
                              config=BrainConfig(max_epochs=spec.brain_epochs), seed=spec.seed)
    seconds = time.perf_counter() - began
    brain = result.brain
    brain.info["item_catalog"] = item_catalog(split.train)
    knowledge = learn_curriculum(split.train)
    brain.info["curriculum"] = knowledge.to_dict()
    auc = result.validation.auc
    if folder is not None:
        save_checkpoint(brain, folder)
        (folder / "knowledge.json").write_text(json.dumps(knowledge.to_dict()))
        (folder / "training.json").write_text(json.dumps({"train_seconds": seconds, "validation_auc": auc}))
    return PreparedBrain(brain, knowledge, curriculum, config, seconds, auc)


def _curriculum(config: SimulatorConfig, seed: int) -> Curriculum:
    """The curriculum `simulate_cohort(seed=seed)` draws (it depends on the seed only)."""
    curriculum_seq = np.random.SeedSequence(int(seed)).spawn(3)[0]
    return build_curriculum(config, np.random.default_rng(curriculum_seq))


# --- one arm ---------------------------------------------------------------------------------

@dataclass
class ArmResult:
    learner_model: str
    policy: str
    grade: np.ndarray  # (N,)
    profile: np.ndarray  # (N,) str
    immediate: dict[int, np.ndarray]  # N items -> (N,) expected post-test score
    delayed: dict[int, np.ndarray]
    mastered: dict[int, np.ndarray]  # N items -> (N,) share of grade-level skills mastered (truth)
    items_to_mastery: np.ndarray  # (N,) mean items until mastery over the skills mastered during practice
    newly_mastered: np.ndarray  # (N,) share of skills not mastered at the start and mastered by the end
    curve: np.ndarray  # (N, S) expected post-test score every check_every items (index 0: before practice)
    curve_items: np.ndarray  # (S,)
    seconds: float
    recommend_seconds: float  # time spent choosing items (predictions + policy), all learners, all steps
    item_ids: np.ndarray  # (N, steps) the items practised, in order
    pre_test: np.ndarray  # (N,) expected post-test score before any practice


def session_days(rng: np.random.Generator, num_learners: int, steps: int, *, session_length: float,
                 gap_days: float, start_day: np.ndarray) -> np.ndarray:
    """(N, steps) the day of each answer: sessions of ~`session_length` items (geometric) on later
    days (exponential gaps) between 8:00 and 20:00, `ITEM_SECONDS` between answers of a session."""
    days = np.empty((num_learners, steps))
    day = np.floor(start_day) + rng.uniform(8.0, 20.0, num_learners) / 24.0
    for t in range(steps):
        if t > 0:
            new = rng.random(num_learners) < 1.0 / session_length
            start = np.floor(day + rng.exponential(gap_days, num_learners)) + rng.uniform(8.0, 20.0, num_learners) / 24
            start = np.where(start <= day, start + 1.0, start)
            day = np.where(new, start, day + ITEM_SECONDS / 86_400.0)
        days[:, t] = day
    return days


@dataclass
class ClosedLoopCohort:
    """The simulated learners of an arm and everything random about their practice that is not
    the policy's choice: the same for every policy (paired comparisons)."""

    learners: Any  # SimulatedLearners
    config: SimulatorConfig
    days: np.ndarray  # (N, steps) when each answer is given (days after config.start_date)
    grade: np.ndarray  # (N,)
    profile: np.ndarray  # (N,) accommodation profile
    answer_rng: np.random.Generator
    policy_rng: np.random.Generator


def closed_loop_cohort(spec: PolicyEvaluationSpec, prepared: PreparedBrain, learner_model: str,
                       num_learners: int | None = None) -> ClosedLoopCohort:
    """The learners of an arm: `num_learners` (default `spec.num_learners`) drawn with the spec's
    seed; arms with the same number of learners get the same learners."""
    n, steps = num_learners or spec.num_learners, spec.steps
    learner_seq, schedule_seq, answer_seq, policy_seq = np.random.SeedSequence([spec.seed, 1]).spawn(4)
    config = _simulator_config(spec, n, steps)
    model = build_learner_model(learner_model, spec.learner_model_options.get(learner_model))
    learners = model.draw(config=config, curriculum=prepared.curriculum, rng=np.random.default_rng(learner_seq))
    days = session_days(np.random.default_rng(schedule_seq), n, steps, session_length=config.session_length,
                        gap_days=config.session_gap_days, start_day=learners.start_day)
    return ClosedLoopCohort(learners=learners, config=config, days=days,
                            grade=np.asarray(config.grades)[learners.grade_index],
                            profile=np.asarray(config.profiles, dtype=object)[learners.profile_index],
                            answer_rng=np.random.default_rng(answer_seq), policy_rng=np.random.default_rng(policy_seq))


def placement_rows(catalog, grade: np.ndarray) -> np.ndarray:
    """(N, PLACEMENT_ITEMS) the placement items of each learner: the first item of the first
    grade-level skill of each subject."""
    return np.stack([_placement_row(catalog, g) for g in np.asarray(grade).tolist()])


def run_arm(spec: PolicyEvaluationSpec, prepared: PreparedBrain, learner_model: str, policy_name: str, *,
            progress: Progress | None = None) -> ArmResult:
    began = time.perf_counter()
    brain, curriculum = prepared.brain, prepared.curriculum
    n, steps = spec.learners_for(policy_name), spec.steps
    cohort = closed_loop_cohort(spec, prepared, learner_model, n)
    learners, days, grade, sim_config = cohort.learners, cohort.days, cohort.grade, cohort.config

    items = catalog_frame(brain)
    catalog = policy_catalog(brain, prepared.knowledge)
    sim_index = pd.Index(curriculum.items["item_id"].astype(str)).get_indexer(catalog.item_ids)
    if (sim_index < 0).any():
        raise ConfigError("the Main Brain's catalog names items this curriculum does not have")
    missing = [int(g) for g in np.unique(grade) if not len(catalog.grade_skills(int(g)))
               or not len(catalog.grade_items(int(g)))]
    if missing:
        raise ConfigError(f"the Main Brain's training history holds no skill of grade(s) {missing}: train it on more "
                          "learners (--brain-learners, --brain-interactions)")
    policy = build_policy(policy_name)
    states = LearnerStates(grade=grade, num_skills=catalog.num_skills, num_items=catalog.num_items)
    if policy_name == "mastery-bkt":
        states.bkt_known = np.broadcast_to(np.nan_to_num(catalog.bkt.prior, nan=0.0), (n, catalog.num_skills)).copy()
    predictor = BatchPredictor(brain, items, num_learners=n) if policy.needs_predictions else None
    if policy_name == "aivo-gain":  # only the predictions its choice reads (the same choice, fewer items to score)
        candidates, valid = rows_per_grade({g: policy.candidate_rows(catalog, g) for g in np.unique(grade).tolist()},
                                           grade)
    else:
        candidates, valid = candidate_rows(catalog, grade)

    # post-test items: every item of the learner's grade (simulator indices), grouped by skill
    per_skill = sim_config.items_per_skill
    skill_grade = curriculum.skills["grade"].to_numpy()
    grade_skills = int((skill_grade == skill_grade[0]).sum())  # skills per grade
    first_skill = np.searchsorted(skill_grade, grade)  # skills are grade-major
    test_items = (first_skill[:, None] * per_skill + np.arange(grade_skills * per_skill)[None, :])

    def post_test(day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = learners.probabilities(test_items, day)  # (N, items) truth, teaches nothing
        skill_p = p.reshape(n, grade_skills, per_skill).mean(axis=2)
        return p.mean(axis=1), skill_p

    placement = placement_rows(catalog, grade)
    score0, skill0 = post_test(days[:, 0])
    mastered_at = np.where(skill0 >= spec.mastery_p, 0, -1)  # items practised when first mastered (-1 not yet)
    initially = skill0 >= spec.mastery_p
    curve = [score0]
    curve_items = [0]
    immediate, delayed, mastered = {}, {}, {}
    recommend_seconds = 0.0
    trajectory = np.empty((n, steps), dtype=np.int64)
    for t in range(steps):
        day = days[:, t]
        if t < PLACEMENT_ITEMS:
            rows = placement[:, t]
        else:
            tick = time.perf_counter()
            p = predictor.predict(candidates) if predictor is not None else None
            rows = next_items(policy=policy, catalog=catalog, states=states, day=day, candidates=candidates,
                              valid=valid, p_correct=p, rng=cohort.policy_rng, num_items=1)[:, 0]
            recommend_seconds += time.perf_counter() - tick
        trajectory[:, t] = rows
        response = learners.respond(sim_index[rows], day, cohort.answer_rng)
        correct = response.correct.astype(np.int8)
        states.record(catalog, rows, correct, day)
        if predictor is not None:
            predictor.append(rows, correct)
        done = t + 1
        if done % spec.check_every == 0 or done in spec.checkpoints:
            now = days[:, t] + 1e-6
            score, skill_p = post_test(now)
            newly = (mastered_at < 0) & (skill_p >= spec.mastery_p)
            mastered_at = np.where(newly, done, mastered_at)
            if done % spec.check_every == 0:
                curve.append(score)
                curve_items.append(done)
            if done in spec.checkpoints:
                immediate[done] = score
                delayed[done] = post_test(now + spec.delay_days)[0]
                mastered[done] = (skill_p >= spec.mastery_p).mean(axis=1)
        if progress is not None:
            progress(f"{learner_model}/{policy_name}", done, steps)
    learned = (~initially) & (mastered_at > 0)
    items_to_mastery = np.where(learned.any(axis=1),
                                np.where(learned, mastered_at, 0).sum(axis=1) / np.maximum(learned.sum(axis=1), 1),
                                np.nan)
    newly_mastered = learned.sum(axis=1) / np.maximum((~initially).sum(axis=1), 1)
    return ArmResult(learner_model=learner_model, policy=policy_name, grade=grade, profile=cohort.profile,
                     immediate=immediate, delayed=delayed, mastered=mastered, items_to_mastery=items_to_mastery,
                     newly_mastered=newly_mastered, curve=np.stack(curve, axis=1), curve_items=np.array(curve_items),
                     seconds=time.perf_counter() - began, recommend_seconds=recommend_seconds,
                     item_ids=catalog.item_ids[trajectory], pre_test=score0)


def _placement_row(catalog, grade: int) -> np.ndarray:
    skills = catalog.grade_skills(int(grade))
    subjects = catalog.skill_subject[skills]
    firsts = [skills[np.flatnonzero(subjects == s)[0]] for s in np.unique(subjects)][:PLACEMENT_ITEMS]
    rows = [catalog.skill_items[k][0] for k in firsts]
    while len(rows) < PLACEMENT_ITEMS:
        rows.append(rows[-1])
    return np.array(rows, dtype=np.int64)


# --- statistics ------------------------------------------------------------------------------

def mean_ci(values: np.ndarray) -> dict[str, float]:
    """Mean with a normal 95% confidence interval."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return {"mean": float("nan"), "low": float("nan"), "high": float("nan"), "n": 0}
    half = 1.96 * v.std(ddof=1) / math.sqrt(len(v)) if len(v) > 1 else float("nan")
    mean = float(v.mean())
    return {"mean": round(mean, 5), "low": round(mean - half, 5), "high": round(mean + half, 5), "n": int(len(v))}


def difference_ci(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """Mean of a - b with a 95% CI: paired when both arms hold the same learners (same length),
    else the unpaired (Welch) interval."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) == len(b):
        return {**mean_ci(a - b), "paired": True}
    mean = float(a.mean() - b.mean())
    half = 1.96 * math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    return {"mean": round(mean, 5), "low": round(mean - half, 5), "high": round(mean + half, 5),
            "n": int(min(len(a), len(b))), "paired": False}


def cohens_d(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    pooled = math.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2.0)
    return round(float((a.mean() - b.mean()) / pooled), 4) if pooled > 0 else float("nan")


def summarize(arms: Sequence[ArmResult], spec: PolicyEvaluationSpec, *, reference: str = "fixed-curriculum",
              focus: str = "aivo-gain", focus_items: int = 100) -> dict[str, Any]:
    """Per learner model: per policy the outcome means with 95% CIs, effect sizes (Cohen's d) of
    `focus` against every other policy, the subgroup check (grade, accommodation profile: paired
    difference of `focus` minus `reference` after `focus_items`), the mastery curves."""
    out: dict[str, Any] = {"spec": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(spec).items()},
                           "learner_models": {}}
    for model in dict.fromkeys(a.learner_model for a in arms):
        by_policy = {a.policy: a for a in arms if a.learner_model == model}
        table = {}
        for name, arm in by_policy.items():
            table[name] = {
                "post_test": {str(k): mean_ci(v) for k, v in arm.immediate.items()},
                "learning_gain": {str(k): mean_ci(v - arm.pre_test) for k, v in arm.immediate.items()},
                "delayed_post_test": {str(k): mean_ci(v) for k, v in arm.delayed.items()},
                "skills_mastered": {str(k): mean_ci(v) for k, v in arm.mastered.items()},
                "items_to_mastery": mean_ci(arm.items_to_mastery),
                "newly_mastered_share": mean_ci(arm.newly_mastered),
                "seconds": round(arm.seconds, 1),
                "learners": int(len(arm.grade)),
                "recommend_ms_per_learner_step": round(1000 * arm.recommend_seconds
                                                       / max(1, len(arm.grade) * (spec.steps - PLACEMENT_ITEMS)), 4),
                "curve": {"items": arm.curve_items.tolist(),
                          "mean": [round(float(x), 5) for x in arm.curve.mean(axis=0)],
                          "half_width": [round(float(1.96 * x / math.sqrt(arm.curve.shape[0])), 5)
                                         for x in arm.curve.std(axis=0, ddof=1)]},
            }
        entry: dict[str, Any] = {"policies": table}
        if focus in by_policy and focus_items in by_policy[focus].immediate:
            f = by_policy[focus]
            effects, beats = {}, {}
            for name, arm in by_policy.items():
                if name == focus:
                    continue
                a, b = f.immediate[focus_items], arm.immediate[focus_items]
                ca, cb = mean_ci(a), mean_ci(b)
                ga, gb = mean_ci(a - f.pre_test), mean_ci(b - arm.pre_test)
                effects[name] = {"cohens_d": cohens_d(a, b), "difference": difference_ci(a, b),
                                 "non_overlapping_ci": bool(ca["low"] > cb["high"]),
                                 "gain_cohens_d": cohens_d(a - f.pre_test, b - arm.pre_test),
                                 "gain_non_overlapping_ci": bool(ga["low"] > gb["high"])}
                beats[name] = effects[name]["non_overlapping_ci"]
            entry["effects"] = {"items": focus_items, "policy": focus, "against": effects,
                                "beats_every_baseline": all(beats.values()) if beats else None,
                                "beats_every_baseline_on_gain": all(e["gain_non_overlapping_ci"]
                                                                    for e in effects.values()) if effects else None}
            if reference in by_policy and len(by_policy[reference].grade) == len(f.grade):
                r = by_policy[reference]
                diff = f.immediate[focus_items] - r.immediate[focus_items]
                groups = {}
                for column, values in (("grade", f.grade.astype(str)), ("accommodation", f.profile.astype(str))):
                    groups[column] = {}
                    for value in sorted(set(values.tolist()), key=lambda x: (len(x), x)):
                        mask = values == value
                        groups[column][value] = {"difference": mean_ci(diff[mask]),
                                                 "focus": mean_ci(f.immediate[focus_items][mask]),
                                                 "reference": mean_ci(r.immediate[focus_items][mask])}
                worse = [f"{c}={v}" for c, g in groups.items() for v, s in g.items()
                         if s["difference"]["high"] < 0]
                lower = [f"{c}={v}" for c, g in groups.items() for v, s in g.items()
                         if s["difference"]["mean"] < 0]
                entry["subgroups"] = {"reference": reference, "items": focus_items, "groups": groups,
                                      "significantly_worse": worse, "lower_mean": lower}
        out["learner_models"][model] = entry
    return out


@dataclass
class PolicyEvaluation:
    spec: PolicyEvaluationSpec
    summary: dict[str, Any]
    arms: list[ArmResult]
    brains: dict[str, dict[str, Any]]


def evaluate_policies(spec: PolicyEvaluationSpec, *, cache_dir: Path | None = None,
                      progress: Progress | None = None) -> PolicyEvaluation:
    """Every (learner model, policy) arm of `spec`; see the module docstring."""
    arms: list[ArmResult] = []
    brains = {}
    for model in spec.learner_models:
        prepared = prepare_brain(spec, model, cache_dir=cache_dir)
        brains[model] = {"train_seconds": round(prepared.train_seconds, 1), "validation_auc": prepared.validation_auc,
                         "training_learners": spec.brain_learners, "training_interactions": spec.brain_interactions}
        for policy in spec.policies:
            arm = run_arm(spec, prepared, model, policy, progress=progress)
            log.info("%s / %s: %.1f s", model, policy, arm.seconds)
            arms.append(arm)
    summary = summarize(arms, spec)
    summary["brains"] = brains
    return PolicyEvaluation(spec=spec, summary=summary, arms=arms, brains=brains)


LATEST = "latest.json"


def save_report(result: PolicyEvaluation, *, folder: Path, out: Path | None = None,
                plot: Path | None = None) -> list[Path]:
    """Write the summary as `folder/latest.json` (the dashboard's panel reads it), and to `out`
    and the mastery-vs-items plot to `plot` when given."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result.summary, indent=1, default=_plain)
    written = []
    for path in (folder / LATEST, out):
        if path is None:
            continue
        path = Path(path)
        if path.exists() and path.is_dir():
            raise ConfigError(f"{path}: is a folder; --out names the JSON file to write")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
        written.append(path)
    if plot is not None:
        drawn = write_policy_plot(path=Path(plot), summary=result.summary)
        if drawn is not None:
            written.append(drawn)
    return written


def latest_report(folder: Path) -> dict[str, Any] | None:
    """The summary `save_report` wrote last into `folder`, or None."""
    path = Path(folder) / LATEST
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
