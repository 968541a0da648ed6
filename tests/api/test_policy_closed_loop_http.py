"""The closed-loop policy evaluation's fast path is honest: driving the real HTTP API on loopback
(GET recommendations, POST interactions) gives the same items, answers and outcomes as the
in-process path (`run_arm`: batched predictions, the same `next_items` service call)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
import torch

from aivo.api import create_app
from aivo.brain.versions import register_brain
from aivo.clock import FrozenClock
from aivo.registry import open_registry
from aivo.registry.api_keys import create_api_key
from aivo.registry.tables import DEFAULT_TENANT
from aivo.services.policy_evaluation import (
    PLACEMENT_ITEMS,
    PolicyEvaluationSpec,
    closed_loop_cohort,
    placement_rows,
    prepare_brain,
    run_arm,
)
from aivo.services.recommendations import policy_catalog

from .conftest import ServerThread, make_settings

SMALL_WORLD = {"grades": (3, 4), "skills_per_grade": 3, "items_per_skill": 4}


@pytest.mark.parametrize("policy", ["aivo-gain", "aivo-target"])
@pytest.mark.parametrize("learner_model", ["simulator", "bkt-forgetting"])
def test_http_api_trajectory_equals_the_in_process_path(tmp_path, policy, learner_model):
    torch.set_num_threads(1)
    spec = PolicyEvaluationSpec(policies=(policy,), learner_models=(learner_model,), num_learners=4,
                                checkpoints=(14,), seed=5, brain_learners=80, brain_interactions=40, brain_epochs=1,
                                check_every=7, simulator=SMALL_WORLD)
    prepared = prepare_brain(spec, learner_model)
    fast = run_arm(spec, prepared, learner_model, policy)

    settings = make_settings(tmp_path / "home", None, recommendation_cache_ttl_s=0.0)
    registry = open_registry(settings)
    register_brain(registry=registry, brain=prepared.brain, training_metrics={}, data_hash=None, promote=True,
                   actor="tests", reason="closed-loop test")
    with registry.session() as session:
        token = create_api_key(session=session, role="admin", tenant=DEFAULT_TENANT, name="loop", learner_ids=(),
                               actor="tests").token
    start = datetime.fromisoformat(prepared.config.start_date).replace(tzinfo=timezone.utc)
    clock = FrozenClock(start)
    app = create_app(settings, clock=clock)

    cohort = closed_loop_cohort(spec, prepared, learner_model)  # the same learners, schedule and answer seed
    catalog = policy_catalog(prepared.brain)
    items = prepared.curriculum.items.set_index("item_id")
    sim_index = {item: i for i, item in enumerate(prepared.curriculum.items["item_id"].astype(str))}
    placement = placement_rows(catalog, cohort.grade)
    n, steps = spec.num_learners, spec.steps
    served = np.empty((n, steps), dtype=object)
    with ServerThread(app) as base:
        import httpx

        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
            for t in range(steps):
                for i in range(n):
                    if t < PLACEMENT_ITEMS:
                        served[i, t] = catalog.item_ids[placement[i, t]]
                        continue
                    clock.set(start + timedelta(days=float(cohort.days[i, t])))
                    r = client.get(f"/v1/learners/learner-{i}/recommendations",
                                   params={"policy": policy, "num_items": 1})
                    assert r.status_code == 200, r.text
                    served[i, t] = r.json()["next_items"][0]["item_id"]
                response = cohort.learners.respond(np.array([sim_index[x] for x in served[:, t]]), cohort.days[:, t],
                                                   cohort.answer_rng)
                rows = []
                for i in range(n):
                    item = items.loc[served[i, t]]
                    when = start + timedelta(days=float(cohort.days[i, t]))
                    rows.append({"learner_id": f"learner-{i}", "item_id": served[i, t], "skill_ids": item["skill_ids"],
                                 "correct": int(response.correct[i]), "order": t,
                                 "timestamp": when.isoformat().replace("+00:00", "Z"), "subject": item["subject"],
                                 "grade": int(cohort.grade[i]), "item_type": item["item_type"]})
                r = client.post("/v1/interactions", json={"interactions": rows})
                assert r.status_code == 201, r.text
    assert (served == fast.item_ids).all(), f"HTTP {served.tolist()}\nin process {fast.item_ids.tolist()}"


def test_the_api_refuses_an_unknown_policy_and_the_setting_refuses_one_too(tmp_path):
    settings = make_settings(tmp_path / "home", None)
    registry = open_registry(settings)
    with registry.session() as session:
        token = create_api_key(session=session, role="admin", tenant=DEFAULT_TENANT, name="k", learner_ids=(),
                               actor="tests").token
    app = create_app(settings)
    with ServerThread(app) as base:
        import httpx

        for name in ("nope", "mastery-bkt", ""):
            r = httpx.get(f"{base}/v1/learners/x/recommendations", params={"policy": name},
                          headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 422, r.text
            assert "policy" in r.text
    assert make_settings(tmp_path / "h2", None).recommendation_policy == "aivo-gain"
    with pytest.raises(ValueError, match="recommendation_policy|RECOMMENDATION_POLICY"):
        make_settings(tmp_path / "h3", None, recommendation_policy="random-in-grade")


def test_the_dashboard_shows_the_last_closed_loop_evaluation(tmp_path):
    from aivo.services.policy_evaluation import evaluate_policies, save_report
    from aivo.services.dashboard_models import POLICY_REPORT

    torch.set_num_threads(1)
    settings = make_settings(tmp_path / "home", None)
    registry = open_registry(settings)
    with registry.session() as session:
        token = create_api_key(session=session, role="admin", tenant=DEFAULT_TENANT, name="k", learner_ids=(),
                               actor="tests").token
    app = create_app(settings)
    with ServerThread(app) as base:
        import httpx

        headers = {"Authorization": f"Bearer {token}", "Accept": "text/html"}
        before = httpx.get(f"{base}/dashboard/models", headers=headers)
        assert before.status_code == 200 and "No closed-loop evaluation yet" in before.text
        spec = PolicyEvaluationSpec(policies=("fixed-curriculum", "aivo-gain"), learner_models=("bkt-forgetting",),
                                    num_learners=6, checkpoints=(10,), seed=1, brain_learners=60,
                                    brain_interactions=30, brain_epochs=1, check_every=5, simulator=SMALL_WORLD)
        result = evaluate_policies(spec)
        written = save_report(result, folder=settings.home / POLICY_REPORT.parent)
        assert written == [settings.home / POLICY_REPORT]
        page = httpx.get(f"{base}/dashboard/models", headers=headers)
    assert page.status_code == 200
    assert "learner model <code>bkt-forgetting</code> (6 learners per policy)" in page.text
    assert "<svg" in page.text and "aivo-gain: " in page.text and "fixed-curriculum: " in page.text
