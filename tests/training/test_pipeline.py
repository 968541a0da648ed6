"""The continuous-training pipeline: the promotion gate, what is recorded, PII scrubbing, cancellation."""

from __future__ import annotations

import pytest

from aivo.brain.train import TrainingStopped
from aivo.errors import DataError
from aivo.registry import get_active_main_version, list_main_versions
from aivo.services.pipeline import PipelineConfig, decide, run_pipeline
from aivo.training.harness import HarnessPolicy, check_thresholds
from aivo.training.runs import get_run, list_runs
from tests.training.conftest import TINY_BRAIN, import_log

WEAK = {**TINY_BRAIN, "learning_rate": 1e-5, "max_epochs": 1}  # barely moves from its initialization
GOOD = {**TINY_BRAIN, "learning_rate": 3e-3, "max_epochs": 4}


def _run(registry, settings, clock, brain, **overrides):
    config = PipelineConfig.from_settings(settings, brain=brain, harness={"thresholds": {"auc": 0.5, "subgroup_gap": None}}, **overrides)
    return run_pipeline(registry=registry, settings=settings, config=config, trigger="test", actor="tests",
                        clock=clock)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # the gate is backend-independent
def test_gate_promotes_a_better_model_and_not_a_worse_one(loaded, settings, clock):
    first = _run(loaded, settings, clock, WEAK)
    assert first.promoted and first.active_version is None  # the first version only needs the harness

    better = _run(loaded, settings, clock, GOOD)
    assert better.active_version == first.candidate_version
    assert better.relative_improvement >= settings.improvement_threshold, better.decision
    assert better.promoted, better.decision
    # Compared on the same test learners: the active version's metrics were computed on better's test split.
    assert better.active_test_metrics["num_rows"] == better.test_metrics["num_rows"]

    worse = _run(loaded, settings, clock, WEAK)
    assert worse.relative_improvement < settings.improvement_threshold
    assert not worse.promoted and "is below the threshold" in worse.decision
    with loaded.session(read_only=True) as session:
        assert get_active_main_version(session=session).version == better.candidate_version
        statuses = {v.version: v.status for v in list_main_versions(session=session)}
    assert statuses[worse.candidate_version] == "candidate"  # registered, kept, not served
    assert statuses[first.candidate_version] == "archived"


def test_a_run_is_recorded_with_search_split_metrics_and_scrubs_pii(registry, cohort, settings, clock):
    frame = cohort.frame.copy()
    frame["note"] = "fine"
    frame.loc[frame.index[:10], "note"] = "call me at mia.lopez@example.org or (555) 123-4567"
    from aivo.data.schema import make_log

    import_log(registry, make_log(frame))
    report = _run(registry, settings, clock, TINY_BRAIN, hpo_trials=2, hpo_timeout_s=60)
    assert report.redactions == 10
    assert report.search["num_trials"] == 2 and len(report.search["trials"]) == 2
    assert report.search["trials"][0]["params"]["hidden_dim"] == TINY_BRAIN["hidden_dim"]  # trial 0 = base config
    assert sum(part["learners"] for part in report.split.values()) == 80
    assert report.split["test"]["learners"] >= 1 and report.split["validation"]["learners"] >= 1
    assert report.training["epochs_run"] <= TINY_BRAIN["max_epochs"]
    with registry.session(read_only=True) as session:
        run = get_run(session=session, run_id=report.run_id)
    assert run.status == "succeeded" and run.promoted and run.candidate_version == report.candidate_version
    assert run.test_metrics["metrics"]["auc"] == report.test_metrics["metrics"]["auc"]
    assert run.details["redactions"] == 10 and run.details["evaluation"]["passed"]


def test_cancellation_stops_training_and_records_the_run(loaded, settings, clock):
    calls = {"n": 0}

    def stop_after_a_few_batches() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    config = PipelineConfig.from_settings(settings, brain={**TINY_BRAIN, "max_epochs": 50})
    with pytest.raises(TrainingStopped):
        run_pipeline(registry=loaded, settings=settings, config=config, trigger="test", actor="tests",
                     should_stop=stop_after_a_few_batches, clock=clock)
    with loaded.session(read_only=True) as session:
        (run,) = list_runs(session=session)
        assert run.status == "cancelled" and run.candidate_version is None
        assert list_main_versions(session=session) == []


def test_a_run_without_data_fails_and_is_recorded(registry, settings, clock):
    with pytest.raises(DataError, match="no interactions"):
        _run(registry, settings, clock, TINY_BRAIN)
    with registry.session(read_only=True) as session:
        (run,) = list_runs(session=session)
    assert run.status == "failed" and "no interactions" in run.error


def test_decide_is_the_gate():
    passed = HarnessPolicy.from_mapping({}, model_kind="main_brain")
    ok = type("R", (), {"passed": True, "summary": lambda self: "ok"})()
    bad = type("R", (), {"passed": False, "summary": lambda self: "auc too low"})()
    assert decide(harness=ok, active_version=None, improvement=None, threshold=0.02, promote="gate")[0]
    assert decide(harness=ok, active_version="v1", improvement=0.02, threshold=0.02, promote="gate")[0]
    assert not decide(harness=ok, active_version="v1", improvement=0.0199, threshold=0.02, promote="gate")[0]
    assert not decide(harness=bad, active_version=None, improvement=None, threshold=0.02, promote="gate")[0]
    assert not decide(harness=ok, active_version=None, improvement=None, threshold=0.02, promote="never")[0]
    assert passed.thresholds == {"auc": 0.6, "subgroup_gap": 0.15}


def test_thresholds_minimums_maximums_and_unmeasurable_gaps():
    checks = {c.metric: c for c in check_thresholds(
        metrics={"auc": 0.71, "ece": 0.08, "subgroup_gap": None, "pedagogy_score": 0.7},
        thresholds={"auc": 0.7, "ece": 0.05, "subgroup_gap": 0.1, "pedagogy_score": 0.8, "f1": 0.5})}
    assert checks["auc"].passed and not checks["ece"].passed
    assert checks["subgroup_gap"].passed and "skipped" in checks["subgroup_gap"].note
    assert not checks["pedagogy_score"].passed
    assert not checks["f1"].passed and "needed" in checks["f1"].note  # missing quality metric fails
    with pytest.raises(DataError, match="unknown threshold"):
        HarnessPolicy.from_mapping({"thresholds": {"accuracyy": 0.5}}, model_kind="main_brain")
    for bad in ("x", None, 2.5, True):
        with pytest.raises(DataError, match="min_group_size must be a whole number"):
            HarnessPolicy.from_mapping({"min_group_size": bad}, model_kind="main_brain")
    assert HarnessPolicy.from_mapping({"min_group_learners": 3.0}, model_kind="main_brain").min_group_learners == 3


@pytest.mark.parametrize("value", [float("inf"), float("nan"), 1e300, 2**31, 2.5, "5", True])
def test_a_policy_group_size_is_a_bounded_whole_number(value):
    """Issue 14: Infinity (a CLI `--policy` may carry it) was an OverflowError, a traceback; 1e300
    was a 301-digit group size."""
    with pytest.raises(DataError, match="must be a whole number"):
        HarnessPolicy.from_mapping({"min_group_size": value}, model_kind="main_brain")
    assert HarnessPolicy.from_mapping({"min_group_learners": 12.0}, model_kind="main_brain").min_group_learners == 12


@pytest.mark.parametrize("bound", [float("inf"), float("-inf"), float("nan"), "0.7", True, [0.7]])
def test_a_threshold_is_a_finite_number(bound):
    """`aivo jobs create --policy '{"thresholds": {"auc": Infinity}}'` was stored: Python's JSON reads
    `Infinity`, and the API's schema is not on the CLI's path."""
    with pytest.raises(DataError, match="thresholds.auc must be a finite number"):
        HarnessPolicy.from_mapping({"thresholds": {"auc": bound}}, model_kind="main_brain")
    policy = HarnessPolicy.from_mapping({"thresholds": {"auc": 0.75, "ece": None}}, model_kind="main_brain")
    assert policy.thresholds["auc"] == 0.75 and "ece" not in policy.thresholds
