"""Issue 14 (High 2): the simulator's truth (`p_true`) is evaluation-only. Simulated rows mixed
with real ones (the README's flow: `make demo`, then ingest through the API, then train) used to
crash every training run at the oracle metrics; now they are computed on the rows that carry a
truth, and no ingest can set one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aivo.brain.predict import evaluate
from aivo.config import Settings
from aivo.data.schema import InteractionLog
from aivo.data.simulator import SimulatorConfig, simulate_cohort
from aivo.errors import DataError
from aivo.registry import import_interactions, load_interactions, open_registry
from aivo.services.ingest import ingest_interactions
from aivo.brain.versions import load_main_brain
from aivo.services.main_brain import train_main_version
from tests.brain.helpers import tiny_config


def _real_rows(items: list[str], *, learners: int, length: int, seed: int) -> dict[str, list]:
    rng = np.random.default_rng(seed)
    columns: dict[str, list] = {k: [] for k in ("learner_id", "item_id", "correct", "order", "extra")}
    for learner in range(learners):
        for order in range(length):
            columns["learner_id"].append(f"real-{learner}")
            columns["item_id"].append(items[int(rng.integers(len(items)))])
            columns["correct"].append(int(rng.random() < 0.6))
            columns["order"].append(order)
            columns["extra"].append({"device": "tablet"})
    return columns


def test_training_and_evaluation_complete_on_simulated_rows_mixed_with_ingested_ones(tmp_path):
    torch.set_num_threads(1)
    settings = Settings(home=tmp_path / "home", num_threads=1, secret_key="evaluation-truth-tests-key-0123456789")
    registry = open_registry(settings)
    cohort = simulate_cohort(config=SimulatorConfig(num_learners=24, interactions_per_learner=20), seed=4)
    with registry.session() as session:  # what `aivo demo` does: the simulator's own import keeps its truth
        import_interactions(session=session, log=cohort.log, secret_key=settings.resolved_secret_key(),
                            keep_evaluation_truth=True)
    items = sorted(cohort.log.frame["item_id"].astype(str).unique())
    ingest_interactions(registry=registry, settings=settings, columns=_real_rows(items, learners=16, length=20, seed=5),
                        tenant="default")

    report = train_main_version(registry=registry, settings=settings, config=tiny_config(), seed=0, actor="tests",
                                fractions=(0.5, 0.2, 0.3))
    assert report.test["metrics"]["n"] > 0

    with registry.session(read_only=True) as session:
        log = load_interactions(session=session)
    truth = log.frame["p_true"].to_numpy(dtype=np.float64)
    assert np.isnan(truth).sum() == 16 * 20 and np.isfinite(truth).sum() == 24 * 20
    evaluation = evaluate(brain=load_main_brain(registry=registry).brain, log=log)
    scored_with_truth = evaluation.num_scored - 16 * 19  # the first attempt of each learner is not scored
    assert evaluation.oracle is not None and evaluation.oracle.n == scored_with_truth
    assert evaluation.metrics.n == evaluation.num_scored


def test_a_log_without_any_truth_has_no_oracle(tmp_path):
    torch.set_num_threads(1)
    settings = Settings(home=tmp_path / "home", num_threads=1)
    registry = open_registry(settings)
    items = [f"q{i}" for i in range(6)]
    ingest_interactions(registry=registry, settings=settings, columns=_real_rows(items, learners=12, length=15, seed=1))
    train_main_version(registry=registry, settings=settings, config=tiny_config(), seed=0, actor="tests")
    with registry.session(read_only=True) as session:
        log = load_interactions(session=session)
    frame = log.frame.assign(p_true=np.nan)
    evaluation = evaluate(brain=load_main_brain(registry=registry).brain, log=InteractionLog(frame))
    assert evaluation.oracle is None


def test_oracle_metrics_need_rows_with_truth():
    from aivo.data.simulator import oracle_metrics

    cohort = simulate_cohort(config=SimulatorConfig(num_learners=4, interactions_per_learner=10), seed=1)
    frame = cohort.log.frame.copy()
    half = frame.assign(p_true=np.where(frame["order"] < 5, frame["p_true"], np.nan))
    assert oracle_metrics(half).n == 4 * 5
    with pytest.raises(DataError, match="no row carries"):
        oracle_metrics(frame.assign(p_true=np.nan))
