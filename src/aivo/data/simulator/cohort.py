"""Front door of the simulator: `simulate_cohort(config=..., seed=...) -> SimulatedCohort`, and
`oracle_metrics(log)`, the metrics of the true probabilities (the best any model could reach)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from aivo.data.metrics import BinaryMetrics, binary_metrics
from aivo.data.schema import InteractionLog
from aivo.data.simulator.config import SimulatorConfig
from aivo.data.simulator.curriculum import Curriculum, build_curriculum
from aivo.data.simulator.engine import PracticeRecord, Progress, run_practice
from aivo.data.simulator.learner_models import LearnerModel, SimulatorModel
from aivo.data.simulator.learners import learner_ids
from aivo.errors import DataError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimulatedCohort:
    config: SimulatorConfig
    seed: int
    log: InteractionLog  # schema columns + p_true, accommodation; sorted by (learner_id, order)
    curriculum: Curriculum
    learners: pd.DataFrame  # one row per learner (same order as the rows of the ability matrices)
    # (num_learners, num_skills) arrays; skill columns in curriculum.skills order. For the
    # "simulator" learner model these are abilities in logits; other models give their own
    # per-skill state (bkt-forgetting: P(skill known)).
    initial_ability: np.ndarray  # theta0 before any practice
    final_ability: np.ndarray  # retained ability after the learner's last answer
    practice_count: np.ndarray  # attempts that exercised each skill
    learner_model: str = "simulator"  # the learner model that answered (aivo.data.simulator.learner_models)

    def save_truth(self, folder: str | Path) -> list[Path]:
        """Write the hidden truth next to a simulated log: curriculum and learner traits (CSV)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for name, frame in (("skills", self.curriculum.skills), ("items", self.curriculum.items),
                            ("item_types", self.curriculum.item_types), ("learners", self.learners)):
            path = folder / f"{name}.csv"
            frame.to_csv(path, index=False)
            written.append(path)
        return written


def _interaction_frame(config: SimulatorConfig, curriculum: Curriculum, learners: pd.DataFrame,
                       record: PracticeRecord) -> pd.DataFrame:
    n, m = record.item.shape
    learner = np.repeat(np.arange(n), m)  # rows are learner-major: already sorted by (learner, order)
    item = record.item.ravel()
    items = curriculum.items
    start = np.datetime64(config.start_date, "us")
    micros = np.round(record.day.ravel() * 86_400e6).astype(np.int64)
    timestamp = pd.Series(start + micros.astype("timedelta64[us]")).dt.tz_localize("UTC")

    def take(values: pd.Series, index: np.ndarray):
        # Gather the (few) distinct strings by index: no string is built per row.
        return pd.array(np.asarray(values, dtype=object)[index], dtype="string")

    return pd.DataFrame({
        "learner_id": take(learners["learner_id"], learner),
        "item_id": take(items["item_id"], item),
        "correct": record.correct.ravel().astype(np.int8),
        "skill_ids": take(items["skill_ids"], item),
        "order": np.tile(np.arange(m, dtype=np.int64), n),
        "timestamp": timestamp,
        "response_time_s": record.response_time_s.ravel().astype(np.float64),
        "subject": take(items["subject"], item),
        # The learner's grade (a subgroup for evaluation); an item's own grade level is in
        # curriculum.items and differs for remediation of an earlier grade's skill.
        "grade": pd.array(learners["grade"].to_numpy()[learner], dtype="Int64"),
        "item_type": take(items["item_type"], item),
        "p_true": record.p_true.ravel(),
        "accommodation": take(learners["accommodation"], learner),
    })


def simulate_cohort(*, config: SimulatorConfig, seed: int, progress: Progress | None = None,
                    learner_model: LearnerModel | None = None) -> SimulatedCohort:
    """Simulate `config.num_learners` learners answering `config.interactions_per_learner` items.

    Deterministic: the same config and seed give an identical cohort. The curriculum depends
    only on the seed and the curriculum settings (not on the number of learners).
    `learner_model` decides how learners answer and learn (default: the project's simulator)."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"seed must be a non-negative integer, got {seed!r}")
    began = time.perf_counter()
    curriculum_seq, learner_seq, practice_seq = np.random.SeedSequence(int(seed)).spawn(3)
    curriculum = build_curriculum(config, np.random.default_rng(curriculum_seq))
    model = learner_model if learner_model is not None else SimulatorModel()
    simulated = model.draw(config=config, curriculum=curriculum, rng=np.random.default_rng(learner_seq))
    initial_state = simulated.final_state(simulated.start_day).copy()  # before any practice
    record = run_practice(config, curriculum, simulated, np.random.default_rng(practice_seq), progress=progress)
    learners = simulated.traits_frame(learner_ids(config.num_learners))
    learners["num_interactions"] = config.interactions_per_learner
    learners["skills_practiced"] = (record.practice_count > 0).sum(axis=1)
    frame = _interaction_frame(config, curriculum, learners, record)
    kind = "" if model.name == SimulatorModel.name else f" ({model.name} learner model)"
    notes = (f"simulated K-12 cohort{kind}: seed {seed}, {config.num_learners} learners x "
             f"{config.interactions_per_learner} interactions, {curriculum.num_skills} skills, "
             f"{curriculum.num_items} items",)
    interaction_log = InteractionLog(frame, source=f"<simulated seed={seed}>", notes=notes)
    logger.info("simulated %d interactions for %d learners in %.2fs", len(frame), config.num_learners,
             time.perf_counter() - began)
    return SimulatedCohort(config=config, seed=int(seed), log=interaction_log, curriculum=curriculum,
                           learners=learners, initial_ability=initial_state,
                           final_ability=record.final_ability, practice_count=record.practice_count,
                           learner_model=model.name)


def oracle_metrics(log: InteractionLog | pd.DataFrame, *, skip_first_attempt: bool = False) -> BinaryMetrics:
    """AUC, log-loss, ... of the true probabilities `p_true` against the simulated answers: the
    best any model could reach on these rows. `skip_first_attempt` drops each learner's first
    row, matching evaluations that score every attempt but the first."""
    frame = log.frame if isinstance(log, InteractionLog) else log
    if "p_true" not in frame.columns:
        raise DataError("oracle metrics need the true probabilities (column 'p_true'): only simulated "
                        "logs have them")
    if skip_first_attempt:
        first = frame.groupby("learner_id", sort=False)["order"].transform("min")
        frame = frame.loc[frame["order"] != first]
    truth = pd.to_numeric(frame["p_true"], errors="coerce").to_numpy(dtype=np.float64)
    known = np.isfinite(truth)  # rows mixed in from real data have no truth
    if not known.any():
        raise DataError("no row carries a true probability ('p_true')")
    return binary_metrics(frame["correct"].to_numpy()[known], truth[known])
