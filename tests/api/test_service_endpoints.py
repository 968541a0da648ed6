"""Learners, recommendations, models, federated rounds, health, stats, metrics, dashboard and the
OpenAPI document, against a real server on both backends."""

from __future__ import annotations

import re

import httpx
import sqlalchemy as sa

from aivo.registry import list_audit, record_federated_update, register_main_version
from aivo.brain.versions import load_main_brain


def test_health_needs_no_key_and_reports_components(api):
    body = httpx.get(api.base + "/health").json()
    assert body["status"] == "ok"
    assert body["database"]["ok"] and body["artifact_store"]["ok"]
    assert body["active_model"]["version"] == "aivo-main-v1"
    assert body["scheduler"]["running"] is False and body["scheduler"]["note"]
    assert "sqlite" not in body["database"]["detail"] or api.settings.is_embedded
    assert str(api.settings.home) not in str(body)  # no paths for anonymous callers


def test_recommendations_shape_and_cache(api):
    with api.client("service") as c:
        r = c.get("/v1/learners/L003/recommendations", params={"num_items": 3})
        assert r.status_code == 200, r.text
        first = r.json()
        second = c.get("/v1/learners/L003/recommendations", params={"num_items": 3}).json()
    assert first["learner_id"] == api.pseudonym("L003") and first["model_version"] == "aivo-main-v1"
    assert len(first["next_items"]) == 3
    assert all(0 <= item["p_correct"] <= 1 and item["reason"] for item in first["next_items"])
    assert first["skills"] and {s["decision"] for s in first["skills"]} <= {"LEVEL_UP", "LEVEL_DOWN", "STAY", "REVIEW"}
    assert all(s["reason"] for s in first["skills"]) and first["mastery"]
    assert first["cached"] is False and second["cached"] is True
    assert {k: v for k, v in second.items() if k != "cached"} == {k: v for k, v in first.items() if k != "cached"}


def test_recommendations_without_interactions_is_409(api):
    with api.client("admin") as c:
        # The teacher key's roster created L001/L002 with interactions; a roster-only learner has none.
        from aivo.registry.api_keys import create_api_key

        with api.registry.session() as session:
            create_api_key(session=session, role="teacher", tenant="school-a", actor="tests",
                           learner_ids=[api.pseudonym("roster-only")])
        r = c.get("/v1/learners/roster-only/recommendations")
    assert r.status_code == 409 and "no interactions yet" in r.json()["detail"]


def test_models_list_status_promote_rollback(api):
    loaded = load_main_brain(registry=api.registry)
    with api.registry.session() as session:  # a second version, registered but not active
        register_main_version(session=session, store=api.registry.store, version="aivo-main-v2",
                              artifact=_artifact_of(api, loaded.version.artifact_sha256),
                              architecture=loaded.version.architecture,
                              training_metrics={"test": {"metrics": {"auc": 0.7}}}, parent_version="aivo-main-v1")
    with api.client("admin") as c:
        versions = c.get("/v1/models").json()
        assert [v["version"] for v in versions] == ["aivo-main-v2", "aivo-main-v1"]
        assert c.get("/v1/models", params={"status": "active"}).json()[0]["version"] == "aivo-main-v1"
        status = c.get("/v1/model/aivo-main-brain/status").json()
        assert status["active"] and status["version"]["version"] == "aivo-main-v1"
        assert c.get("/v1/model/aivo-main-v2/status").json()["active"] is False
        assert c.get("/v1/model/no-such-version/status").status_code == 404
        assert c.post("/v1/model/aivo-main-v2/promote", json={}).status_code == 422  # a reason is required
        promoted = c.post("/v1/model/aivo-main-v2/promote", json={"reason": "tests"})
        assert promoted.status_code == 200 and promoted.json()["status"] == "active"
        again = c.post("/v1/model/aivo-main-v2/promote", json={"reason": "tests"})
        assert again.status_code == 409 and "already active" in again.json()["detail"]
        rec = c.get("/v1/learners/L004/recommendations").json()
        assert rec["model_version"] == "aivo-main-v2" and rec["cached"] is False  # promotion invalidates
        back = c.post("/v1/models/rollback", json={"reason": "tests"})
        assert back.status_code == 200 and back.json()["version"] == "aivo-main-v1"
        assert c.get("/v1/learners/L004/recommendations").json()["model_version"] == "aivo-main-v1"
        assert c.post("/v1/models/rollback", json={"reason": "x", "to_version": "nope"}).status_code == 404
    from aivo.training.retraining import schedule_retraining

    job = schedule_retraining(registry=api.registry, settings=api.settings, model_id="aivo-main-brain",
                              reason="tests", force=True).job
    with api.client("service") as c:
        details = c.get("/v1/model/aivo-main-brain/status").json()["details"]
    assert details["training"]["open_job"] == {"id": job.id, "status": "queued"}  # from the trainer-jobs hook
    assert details["drift"] is None
    with api.registry.session(read_only=True) as session:
        actors = {(a.action, a.actor) for a in list_audit(session=session)}
    assert any(action == "main.promote" and actor.startswith("apikey:") for action, actor in actors)


def _artifact_of(api, digest):
    from aivo.registry import ArtifactRef

    return ArtifactRef(sha256=digest, size=api.registry.store.size(digest))


def test_federated_updates(api):
    with api.registry.session() as session:
        record_federated_update(session=session, version_before="aivo-main-v1", strategy="fedavg", status="rejected",
                                num_contributors=7, metrics_before={"auc": 0.7}, metrics_after={"auc": 0.69},
                                improvement=-0.01, privacy={"epsilon": 1.2, "delta": 1e-5})
    with api.client("service") as c:
        updates = c.get("/v1/federated/updates").json()
        assert c.get("/v1/federated/updates", params={"status": "applied"}).json() == []
        assert c.get("/v1/federated/updates", params={"status": "bogus"}).status_code == 422
    assert updates[0]["num_contributors"] == 7 and updates[0]["privacy"]["epsilon"] == 1.2


def test_learner_privacy_comes_from_the_ledger(api):
    from aivo.privacy.ledger import charge_round

    with api.client("teacher") as c:
        before = c.get("/v1/learners/L002").json()["privacy"]
    assert before["epsilon"] == 0.0 and before["rounds_eligible"] == 0 and not before["exhausted"]
    assert before["budget"] == api.settings.epsilon_budget and before["remaining"] == api.settings.epsilon_budget
    with api.registry.session() as session:
        for _ in range(3):
            charge_round(session=session, eligible=[api.pseudonym("L002")], sampled=[api.pseudonym("L002")],
                         private=True, noise_multiplier=1.0, sample_rate=0.5, delta=api.settings.delta,
                         accountant=api.settings.accountant)
    with api.client("teacher") as c:
        after = c.get("/v1/learners/L002").json()["privacy"]
    assert after["rounds_eligible"] == 3 and 0 < after["epsilon"] < api.settings.epsilon_budget
    assert after["remaining"] == round(api.settings.epsilon_budget - after["epsilon"], 6)


def test_learner_status_export_and_erasure(api):
    with api.client("admin") as c:
        status = c.get("/v1/learners/L007").json()
        assert status["num_interactions"] > 0 and status["models"] == []
        export = c.get("/v1/learners/L007/export").json()
        assert export["learner"]["learner_id"] == api.pseudonym("L007")
        assert len(export["data"]["interactions"]) == status["num_interactions"]
        c.get("/v1/learners/L007/recommendations").raise_for_status()
        deleted = c.delete("/v1/learners/L007", params={"reason": "parent request"})
        assert deleted.status_code == 200, deleted.text
        assert deleted.json()["rows_deleted"]["interactions"] == status["num_interactions"]
        assert c.get("/v1/learners/L007").status_code == 404
        assert c.get("/v1/learners/L007/recommendations").status_code == 404
        assert c.delete("/v1/learners/L007").status_code == 404
    with api.registry.engine.connect() as conn:
        left = conn.execute(sa.text("SELECT count(*) FROM learners WHERE pseudonym = :p"),
                            {"p": api.pseudonym("L007")}).scalar()
    assert left == 0


def test_stats_and_metrics(api):
    with api.client("service") as c:
        c.get("/v1/learners/L008/recommendations").raise_for_status()
        stats = c.get("/stats").json()
        metrics = c.get("/metrics")
    assert stats["registry"]["total_learners"] >= 15 and stats["api"]["recommendations"] >= 1
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert re.search(r'aivo_http_requests_total\{method="GET",route="/v1/learners/\{learner_id\}/recommendations",'
                     r'status="200"\} [1-9]', text)
    assert re.search(r"^aivo_learners \d+", text, re.M)
    assert 'aivo_active_model_info{version="aivo-main-v1"} 1.0' in text


def test_openapi_documents_auth_and_schemas(api):
    spec = httpx.get(api.base + "/openapi.json").json()
    assert {"HTTPBearer", "APIKeyHeader"} <= set(spec["components"]["securitySchemes"])
    schemas = spec["components"]["schemas"]
    for name in ("InteractionCreate", "InteractionBatchCreate", "IngestPublic", "LearnerPublic",
                 "RecommendationPublic", "ModelVersionPublic", "PromoteCreate", "ErrorResponse"):
        assert name in schemas, name
    ingest = spec["paths"]["/v1/interactions"]["post"]
    assert {"401", "403", "413", "422"} <= set(ingest["responses"]) and ingest.get("security")
    assert "security" not in spec["paths"]["/health"]["get"]
    assert httpx.get(api.base + "/docs").status_code == 200


def _answers(n: int) -> list[dict]:
    return [{"item_id": f"q{i % 9}", "skill_ids": f"s{i % 3}", "correct": int(i % 3 != 0), "order": i}
            for i in range(n)]


def test_baseline_provisions_the_clone_and_queues_training(api):
    with api.client("service") as c:
        r = c.post("/v1/learners/newcomer-1/baseline", json={"answers": _answers(9)})
        assert r.status_code == 202, r.text
        body = r.json()
        assert body["learner_id"] == api.pseudonym("newcomer-1") and body["answers"] == body["stored"] == 9
        assert body["correct_rate"] == round(6 / 9, 4) and {s["skill_id"] for s in body["skills"]} == {"s0", "s1", "s2"}
        assert body["clone"] == {"kind": "brain", "status": "pending", "source_version": "aivo-main-v1", "created": True}
        assert body["training"]["status"] == "queued" and body["training"]["job_id"]
        status = c.get("/v1/learners/newcomer-1").json()
        assert status["num_interactions"] == 9 and status["tenant"] == "school-a"
        assert [(m["kind"], m["status"]) for m in status["models"]] == [("brain", "pending")]
        again = c.post("/v1/learners/newcomer-1/baseline", json={"answers": _answers(9)}).json()
        assert again["clone"]["created"] is False and again["stored"] == 0
        assert again["training"]["status"] == "already_training"  # the first job is still queued (no worker here)
        assert again["training"]["job_id"] == body["training"]["job_id"]


def test_baseline_refusals(api):
    with api.client("teacher") as c:
        assert c.post("/v1/learners/L001/baseline", json={"answers": _answers(3)}).status_code == 403
    with api.client("service_b") as c:  # tenant B: tenant A's learner is as if unknown... but it exists
        r = c.post("/v1/learners/L001/baseline", json={"answers": _answers(3)})
        assert r.status_code == 404 and "learner not found" in r.json()["detail"]
    with api.client("service") as c:
        bad = _answers(3)
        bad[1]["correct"] = "yes"
        r = c.post("/v1/learners/newcomer-2/baseline", json={"answers": bad})
        assert r.status_code == 422 and "answers[1].correct" in r.json()["detail"]
        assert c.get("/v1/learners/newcomer-2").status_code == 404  # nothing stored, no learner created
        assert c.post("/v1/learners/newcomer-2/baseline", json={"answers": []}).status_code == 422


def test_federated_aggregate(api):
    with api.client("service") as c:
        assert c.post("/v1/federated/aggregate", json={"dry_run": True}).status_code == 403
    with api.client("admin") as c:
        dry = c.post("/v1/federated/aggregate", json={"dry_run": True, "min_learners": 2})
        assert dry.status_code == 200, dry.text
        report = dry.json()["report"]
        assert dry.json()["dry_run"] is True and report["dry_run"] is True
        assert report["status"] == "skipped" and report["version_before"] == "aivo-main-v1"  # no trained clones yet
        bad = c.post("/v1/federated/aggregate", json={"dry_run": True, "strategy": "nonsense"})
        assert bad.status_code == 422 and "strategy" in bad.json()["detail"]
        mixed = c.post("/v1/federated/aggregate", json={"strategy": "median"})
        assert mixed.status_code == 422 and "dry runs only" in mixed.json()["detail"]
        queued = c.post("/v1/federated/aggregate", json={})
        assert queued.status_code == 202 and queued.json()["job"]["status"] == "queued"
        again = c.post("/v1/federated/aggregate", json={}).json()["job"]
        assert again["status"] == "already_training" and again["job_id"] == queued.json()["job"]["job_id"]
        assert c.get("/v1/models").json()[0]["version"] != "aivo-main-v3"  # nothing registered by the dry run
