"""The adaptive orchestrator: baseline snapshots, significant changes, learner-model update jobs."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from aivo.data.schema import make_log
from aivo.data.simulator import SimulatorConfig, simulate_cohort
from aivo.errors import NotFoundError
from aivo.services.adaptive import OrchestratorConfig, compare_snapshots, on_new_interactions, run_adaptive_check
from aivo.services.pipeline import PipelineConfig, run_pipeline
from aivo.training.jobs import list_jobs
from tests.training.conftest import TINY_BRAIN, import_log


def test_compare_snapshots():
    config = OrchestratorConfig(mastery_change=0.15)
    old_d, old_m = {"a": "STAY", "b": "LEVEL_UP", "c": "STAY"}, {"a": 0.60, "b": 0.90, "c": 0.5}
    assert compare_snapshots(old_decisions=old_d, old_mastery=old_m, new_decisions=dict(old_d),
                             new_mastery={"a": 0.70, "b": 0.80, "c": 0.5, "new": 0.1}, config=config) == []
    reasons = compare_snapshots(old_decisions=old_d, old_mastery=old_m,
                                new_decisions={"a": "LEVEL_DOWN", "b": "STAY", "c": "STAY"},
                                new_mastery={"a": 0.40, "b": 0.88, "c": 0.5}, config=config)
    # a: a new actionable decision and a big drop; b: LEVEL_UP -> STAY is not actionable, nor a big move.
    assert reasons == ["skill a: STAY -> LEVEL_DOWN", "skill a: predicted mastery 0.60 -> 0.40"]


@pytest.fixture(scope="module")
def small_cohort():
    """24 learners: analysing a learner runs the recommendation policy over the whole catalog."""
    config = SimulatorConfig(num_learners=24, interactions_per_learner=40, grades=(3, 4), subjects=("math",))
    return simulate_cohort(config=config, seed=1).log


def test_new_interactions_that_change_the_picture_queue_a_learner_model_job(registry, small_cohort, settings, clock):
    cohort, loaded = small_cohort, registry
    import_log(loaded, cohort)
    with pytest.raises(NotFoundError):
        run_adaptive_check(registry=loaded, settings=settings, clock=clock)
    config = PipelineConfig.from_settings(settings, brain={**TINY_BRAIN, "max_epochs": 4, "learning_rate": 3e-3,
                                                                 # the settings before issue 15's defaults: with those defaults a 4-epoch
                                                                 # tiny brain on 24 x 40 answers did not move this skill's picture after
                                                                 # 25 failures (not investigated further); this test is about detection
                                                                 "evidence_kind": "free", "evidence_normalize": "none",
                                                                 "weight_average_decay": 0.0},
                                          harness={"thresholds": {"auc": 0.5, "subgroup_gap": None}})
    run_pipeline(registry=loaded, settings=settings, config=config, trigger="t", actor="t", clock=clock)

    clock.set(cohort.frame["timestamp"].max().to_pydatetime() + timedelta(days=1))  # "now" is just after the data
    baseline = run_adaptive_check(registry=loaded, settings=settings, clock=clock)
    assert (baseline.learners_checked, baseline.learners_changed, baseline.jobs_queued) == (24, 0, [])
    assert run_adaptive_check(registry=loaded, settings=settings, clock=clock).learners_checked == 0

    # One learner fails everything on the skill they practised most, 25 times in a row.
    frame = cohort.frame
    raw_id = frame["learner_id"].iloc[0]
    mine = frame[frame["learner_id"] == raw_id]
    skill = mine["skill_ids"].value_counts().index[0]
    items = mine.loc[mine["skill_ids"] == skill, ["item_id", "item_type"]].drop_duplicates("item_id")
    last = mine.iloc[-1]
    rows = [{"learner_id": raw_id, "item_id": items["item_id"].iloc[i % len(items)], "skill_ids": skill,
             "item_type": items["item_type"].iloc[i % len(items)], "correct": 0, "order": int(last["order"]) + 1 + i,
             "timestamp": last["timestamp"] + timedelta(minutes=i + 1), "response_time_s": 30.0,
             "subject": last["subject"], "grade": last["grade"]} for i in range(25)]
    import_log(loaded, make_log(pd.DataFrame(rows)))
    clock.advance(hours=1)
    check = run_adaptive_check(registry=loaded, settings=settings, clock=clock)
    assert check.learners_checked == 1 and check.learners_changed == 1, check
    (job_id,) = check.jobs_queued
    (job,) = loaded.run(lambda s: list_jobs(session=s, kind="learner_model"), read_only=True).jobs
    assert job.id == job_id and job.status == "queued" and job.reason.startswith("adaptive: skill")
    assert job.model_id == f"learner:{job.learner_id}" and job.created_by == "adaptive-orchestrator"

    # Asked again right away (e.g. after ingestion): the learner's model already has an open job.
    (change,) = on_new_interactions(registry=loaded, settings=settings, learner_ids=[job.learner_id], clock=clock,
                                    config=OrchestratorConfig(mastery_change=1e-9))
    assert change.job_status in (None, "already_training")
    assert len(loaded.run(lambda s: list_jobs(session=s, kind="learner_model"), read_only=True).jobs) == 1
