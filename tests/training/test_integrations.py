"""Jobs run through issue 4's services: a learner's clone (cloned on first use, then trained on
their own interactions) and a federated aggregation round."""

from __future__ import annotations

import pytest

from aivo.registry import get_learner_model
from aivo.services.jobs import make_worker
from aivo.services.pipeline import PipelineConfig, run_pipeline
from aivo.training.retraining import schedule_retraining
from aivo.training.runs import learner_model_id
from tests.training.conftest import TINY_BRAIN


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_learner_model_and_federated_jobs(loaded, settings, clock):
    config = PipelineConfig.from_settings(settings, brain=TINY_BRAIN, harness={"thresholds": {"auc": 0.5,
                                                                                              "subgroup_gap": None}})
    run_pipeline(registry=loaded, settings=settings, config=config, trigger="t", actor="t", clock=clock)
    with loaded.session(read_only=True) as session:
        from aivo.registry import list_learners

        learner = list_learners(session=session, limit=1)[0].learner_id
    decision = schedule_retraining(registry=loaded, settings=settings, model_id=learner_model_id(learner),
                                   reason="adaptive", clock=clock)
    assert decision.status == "queued" and decision.job.kind == "learner_model"
    worker = make_worker(registry=loaded, settings=settings, clock=clock, kinds=("learner_model", "federated"))
    done = worker.run_once()
    assert done.status == "succeeded", done.error
    assert done.result["cloned"] is True and done.result["learner_id"] == learner
    with loaded.session(read_only=True) as session:
        assert get_learner_model(session=session, learner_id=learner).last_trained_at is not None

    federated = schedule_retraining(registry=loaded, settings=settings, model_id="aivo-federated-aggregation",
                                    reason="weekly", clock=clock)
    round_ = worker.run_once()
    assert round_.id == federated.job.id and round_.status == "succeeded", round_.error
    assert round_.result["status"] == "skipped"  # one trained learner, fewer than AIVO_MIN_LEARNERS
