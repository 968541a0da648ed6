"""Drift: the statistics against references, and a shifted simulated cohort against an unshifted one."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from scipy import stats

from aivo.clock import FrozenClock
from aivo.data.schema import make_log
from aivo.data.simulator import SimulatorConfig, simulate_cohort
from aivo.errors import NotFoundError
from aivo.services.drift import check_drift, list_drift_reports
from aivo.services.pipeline import PipelineConfig, run_pipeline
from aivo.training.drift import DriftConfig, Profile, align_mix, compare_profiles, js_divergence, ks_statistic, performance_drift, psi, quantile_psi
from aivo.training.jobs import list_jobs
from tests.training.conftest import import_log

UTC = timezone.utc
BRAIN = {"embed_dim": 16, "hidden_dim": 32, "head_hidden_dim": 32, "evidence_dim": 8, "max_epochs": 4}


def test_statistics_against_closed_forms_and_scipy():
    p = np.array([50, 30, 20])
    assert psi(p, p) == pytest.approx(0.0) and js_divergence(p, p) == pytest.approx(0.0, abs=1e-12)
    assert js_divergence(np.array([1, 0]), np.array([0, 1])) == pytest.approx(1.0)  # disjoint: 1 bit
    q = np.array([30, 30, 40])
    expected_psi = sum((b - a) * np.log(b / a) for a, b in zip(p / 100, q / 100))
    assert psi(p, q) == pytest.approx(expected_psi)
    m = (p / 100 + q / 100) / 2
    kl = lambda x, y: float(np.sum(x * np.log2(x / y)))  # noqa: E731
    assert js_divergence(p, q) == pytest.approx(0.5 * kl(p / 100, m) + 0.5 * kl(q / 100, m))
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 500), rng.normal(0.5, 1, 400)
    assert ks_statistic(a, b)[0] == pytest.approx(stats.ks_2samp(a, b).statistic)
    assert quantile_psi(a, a) == pytest.approx(0.0, abs=1e-3) and quantile_psi(a, b) > 0.1
    ref, cur = align_mix({"x": 5, "y": 3, "__other__": 2}, {"x": 1, "z": 4, "__other__": 1})
    assert ref.tolist() == [5, 3, 2] and cur.tolist() == [1, 0, 5]  # unseen "z" joins the other bucket
    assert performance_drift(0.80, 0.80) == 0.0 and performance_drift(0.80, 0.74) == pytest.approx(0.2)
    assert performance_drift(0.80, 0.95) == 0.0 and performance_drift(0.80, 0.30) == 1.0
    assert performance_drift(0.5, 0.4) is None


def test_the_score_is_the_weighted_mean_of_the_measured_signals():
    rng = np.random.default_rng(1)
    base = dict(num_learners=10, mixes={"item": {"a": 500, "b": 500}}, response_times=rng.normal(3, 1, 300).tolist())
    reference = Profile(num_interactions=1000, predictions=rng.uniform(0, 1, 300).tolist(), auc=0.8, **base)
    current = Profile(num_interactions=1000, predictions=rng.uniform(0, 1, 300).tolist(), auc=0.71, **base)
    signals = compare_profiles(reference, current, config=DriftConfig(min_samples=100))
    assert signals.performance == pytest.approx(0.3)
    assert signals.score == pytest.approx((signals.input + signals.prediction + signals.performance) / 3)
    few = Profile(num_interactions=50, num_learners=2, mixes={"item": {"a": 50}}, response_times=[1.0] * 50,
                  predictions=[0.5] * 50, auc=None)
    empty = compare_profiles(reference, few, config=DriftConfig(min_samples=100))
    assert (empty.input, empty.prediction, empty.performance, empty.score) == (None, None, None, None)


def _shifted(frame, rng):
    """Another population: no multiple-choice items, answers 2.5x slower, 35% of answers flipped."""
    out = frame[frame["item_type"] != "multiple_choice"].copy()
    out["response_time_s"] = out["response_time_s"] * 2.5
    flip = rng.random(len(out)) < 0.35
    out.loc[flip, "correct"] = 1 - out.loc[flip, "correct"]
    return out


def test_a_shifted_cohort_drifts_and_schedules_retraining_an_unshifted_one_does_not(registry, settings):
    cohort = simulate_cohort(config=SimulatorConfig(num_learners=240, interactions_per_learner=40, grades=(3, 4),
                                                    subjects=("math",)), seed=3).log.frame
    ids = sorted(cohort["learner_id"].unique())
    start = cohort["timestamp"].min()
    span_days = (cohort["timestamp"].max() - start).days + 1
    reference, same, other = (cohort[cohort["learner_id"].isin(ids[i * 80:(i + 1) * 80])] for i in range(3))
    clock = FrozenClock(datetime(2025, 1, 1, tzinfo=UTC))
    with pytest.raises(NotFoundError, match="no active Main Brain"):
        check_drift(registry=registry, settings=settings, clock=clock)

    import_log(registry, make_log(reference))
    config = PipelineConfig.from_settings(settings, brain=BRAIN, harness={"thresholds": {"auc": 0.5, "subgroup_gap": None}})
    trained = run_pipeline(registry=registry, settings=settings, config=config, trigger="t", actor="t", clock=clock)
    assert trained.promoted

    def move(frame, end):  # the same interactions, happening in the window that ends at `end`
        moved = frame.copy()
        moved["timestamp"] = moved["timestamp"] - start + (end - timedelta(days=span_days))
        return moved

    first = clock.advance(days=60)
    import_log(registry, make_log(move(same, first)))
    calm = check_drift(registry=registry, settings=settings, window_days=span_days, clock=clock)
    assert calm.score is not None and calm.score < settings.drift_threshold, calm.signals
    assert not calm.drifted and calm.action == {"scheduled": False}
    assert calm.details["current"]["learners"] == 80  # only the window's learners

    second = clock.advance(days=60)
    import_log(registry, make_log(move(_shifted(other, np.random.default_rng(0)), second)))
    drifted = check_drift(registry=registry, settings=settings, window_days=span_days, clock=clock)
    assert drifted.score > settings.drift_threshold and drifted.drifted, drifted.signals
    for signal in ("input", "performance"):
        assert drifted.signals[signal] > calm.signals[signal]
    components = drifted.signals["components"]
    assert components["response_time"]["ks"] > 0.3 and components["response_time"]["median_ratio"] > 2
    assert components["item_type_mix"]["psi"] > 0.25
    assert drifted.action["scheduled"] and drifted.action["status"] == "queued"
    (job,) = registry.run(lambda s: list_jobs(session=s), read_only=True).jobs
    assert job.id == drifted.action["job_id"] and job.reason.startswith("drift_detected_score_0.")
    assert job.created_by == "drift-monitor" and job.model_id == "aivo-main-brain"

    with registry.session(read_only=True) as session:
        reports = list_drift_reports(session=session, model_id="aivo-main-brain")
        assert [r.id for r in reports] == [drifted.id, calm.id]
        assert [r.id for r in list_drift_reports(session=session, model_id=trained.candidate_version)] == \
            [drifted.id, calm.id]
        with pytest.raises(NotFoundError, match="unknown model"):
            list_drift_reports(session=session, model_id="curriculum-generator-v1")
