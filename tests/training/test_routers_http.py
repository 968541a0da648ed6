"""The scheduler, trainer-job and drift endpoints through a real uvicorn server (loopback, httpx),
on SQLite and PostgreSQL (the `api` fixture of tests/api: a tiny trained Main Brain, tenants A and
B, keys of every role). Jobs are run by an in-process worker, as `aivo worker run` would."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from aivo.services.jobs import fetch_job, make_worker
from tests.api.conftest import api, api_pg_databases  # noqa: F401  (fixtures)

SHEET = {"source": "district export", "license": "DPA with the district", "collection_process": "practice app logs",
         "pii_handling": "pseudonymized ids; free text scrubbed", "intended_use": "practice recommendations"}
TINY = {"embed_dim": 8, "hidden_dim": 16, "head_hidden_dim": 16, "evidence_dim": 4, "max_epochs": 2}
LAX = {"thresholds": {"auc": 0.0, "subgroup_gap": None}}


def _worker(api) -> Worker:
    return make_worker(registry=api.registry, settings=api.settings, heartbeat_s=0.2, kinds=("main_brain", "evaluation"))


def _job_body(**changes):
    return {"kind": "main_brain", "datasheet": SHEET, "config": {"brain": TINY, "hpo_trials": 0, "promote": "never"},
            "policy": LAX, "reason": "http test", **changes}


def test_keys_and_roles(api):
    anonymous = api.client(None)
    for method, path in (("GET", "/v1/scheduler/status"), ("GET", "/trainer/jobs"), ("POST", "/trainer/jobs"),
                         ("GET", "/v1/model/aivo-main-brain/drift"), ("POST", "/v1/scheduler/train-main-brain")):
        assert anonymous.request(method, path).status_code == 401, path
    teacher, service = api.client("teacher"), api.client("service")
    assert teacher.get("/trainer/jobs").status_code == 403
    assert teacher.get("/v1/scheduler/status").status_code == 403
    assert service.get("/v1/scheduler/status").status_code == 200
    assert service.post("/trainer/jobs", json=_job_body()).status_code == 403
    assert service.post("/v1/scheduler/train-main-brain").status_code == 403
    assert service.put("/v1/scheduler/jobs/drift_monitor", json={"enabled": False}).status_code == 403


def test_bad_input_is_a_clear_4xx_and_writes_nothing(api):
    admin = api.client("admin")
    before = admin.get("/trainer/jobs").json()["total"]
    missing = admin.post("/trainer/jobs", json={k: v for k, v in _job_body().items() if k != "datasheet"})
    assert missing.status_code == 422 and "datasheet" in missing.json()["detail"]
    placeholder = admin.post("/trainer/jobs", json=_job_body(datasheet={**SHEET, "license": "N/A"}))
    assert placeholder.status_code == 422 and "license must describe the data" in placeholder.json()["detail"]
    bad_config = admin.post("/trainer/jobs", json=_job_body(config={"epochs": 3}))
    assert bad_config.status_code == 422 and "unknown main_brain config" in bad_config.json()["detail"]
    malformed = admin.post("/trainer/jobs", content=b'{"kind": "main_brain", "datasheet": ',
                           headers={"Content-Type": "application/json"})
    assert malformed.status_code == 400 and "malformed JSON" in malformed.json()["detail"]
    bad_policy = admin.post("/trainer/jobs", json=_job_body(policy={**LAX, "min_group_size": "x"}))
    assert bad_policy.status_code == 422 and "min_group_size" in bad_policy.json()["detail"]
    cron = admin.put("/v1/scheduler/jobs/aivo_main_brain_daily", json={"cron": "0 25 * * *"})
    assert cron.status_code == 422 and "is not a valid cron expression" in cron.json()["detail"]
    unknown_job = admin.put("/v1/scheduler/jobs/nightly", json={"cron": "0 1 * * *"})
    assert unknown_job.status_code == 404 and "unknown scheduler job" in unknown_job.json()["detail"]
    assert admin.get("/trainer/jobs").json()["total"] == before
    status = admin.get("/v1/scheduler/status").json()["scheduler"]
    assert all(j["configured_by"] != "override" for j in status["jobs"])
    assert admin.get("/trainer/jobs/999999").status_code == 404
    assert admin.get("/trainer/jobs?status=finished").status_code == 422
    assert admin.get("/v1/model/curriculum-generator-v1/drift").status_code == 404


def test_job_lifecycle_evaluation_and_promotion(api):
    admin = api.client("admin")
    created = admin.post("/trainer/jobs", json=_job_body(priority="high"))
    assert created.status_code == 202, created.text
    job = created.json()
    assert (job["status"], job["priority"], job["datasheet"]["source"]) == ("queued", "high", "district export")
    assert admin.post("/trainer/jobs", json=_job_body()).status_code == 409  # one open job per model
    assert [j["id"] for j in admin.get("/trainer/jobs", params={"status": "queued"}).json()["jobs"]] == [job["id"]]
    assert admin.get(f"/trainer/jobs/{job['id']}/evaluation").json()["status"] == "not_evaluated"
    assert admin.post(f"/trainer/jobs/{job['id']}/promote").status_code == 409  # nothing to promote yet

    assert _worker(api).run_once().id == job["id"]
    done = admin.get(f"/trainer/jobs/{job['id']}").json()
    assert done["status"] == "succeeded" and done["candidate_version"] and done["promoted_version"] is None
    assert done["result"]["promoted"] is False  # config promote=never

    strict = admin.post(f"/trainer/jobs/{job['id']}/evaluate", json={"policy": {"thresholds": {"auc": 0.999}}})
    assert strict.status_code == 202 and strict.json()["status"] == "pending"
    _worker(api).run_once()
    evaluation = admin.get(f"/trainer/jobs/{job['id']}/evaluation").json()
    assert evaluation["status"] == "evaluated" and evaluation["passed"] is False
    refused = admin.post(f"/trainer/jobs/{job['id']}/promote")
    assert refused.status_code == 409 and "did not pass" in refused.json()["detail"]

    admin.post(f"/trainer/jobs/{job['id']}/evaluate", json={"policy": LAX})
    _worker(api).run_once()
    assert admin.get(f"/trainer/jobs/{job['id']}/evaluation").json()["passed"] is True
    promoted = admin.post(f"/trainer/jobs/{job['id']}/promote", json={"reason": "reviewed"})
    assert promoted.status_code == 200 and promoted.json()["promoted_version"] == done["candidate_version"]
    status = admin.get("/v1/model/aivo-main-brain/status").json()
    assert status["version"]["version"] == done["candidate_version"]
    assert status["details"]["training"]["last_trained_at"] is not None


def test_manual_triggers_status_cancellation_and_schedules(api):
    admin = api.client("admin")
    queued = admin.post("/v1/scheduler/train-main-brain", params={"reason": "manual_test"})
    assert queued.status_code == 202 and queued.json()["status"] == "queued"
    job_id = queued.json()["job"]["id"]
    again = admin.post("/v1/scheduler/trigger/aivo-main-brain", params={"reason": "again", "priority": "low"})
    assert again.status_code == 409 and f"job {job_id}" in again.json()["detail"]
    status = admin.get("/v1/scheduler/status").json()["scheduler"]
    assert [m["job_id"] for m in status["models_training"]] == [job_id]
    assert {j["id"] for j in status["jobs"]} == {"aivo_main_brain_daily", "drift_monitor", "weekly_full_retraining",
                                                  "adaptive_training_check", "federated_aggregation_weekly"}
    assert all(j["next_run"] for j in status["jobs"])
    cancelled = admin.delete(f"/trainer/jobs/{job_id}")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert admin.delete(f"/trainer/jobs/{job_id}").status_code == 409

    learner = admin.post("/v1/scheduler/trigger/learner:L001")
    assert learner.status_code == 202 and learner.json()["job"]["kind"] == "learner_model"
    assert learner.json()["job"]["model_id"] == f"learner:{api.pseudonym('L001')}"
    assert api.client("admin_b").post("/v1/scheduler/trigger/learner:L002").status_code == 404  # other tenant
    assert api.client("service_b").get(f"/trainer/jobs/{learner.json()['job']['id']}").status_code == 404
    assert api.client("service").get(f"/trainer/jobs/{learner.json()['job']['id']}").status_code == 200
    # Another tenant's admin neither sees nor cancels it, and no status names that learner's model to it.
    learner_job, learner_model = learner.json()["job"]["id"], learner.json()["job"]["model_id"]
    admin_b = api.client("admin_b")
    assert admin_b.get(f"/trainer/jobs/{learner_job}").status_code == 404
    assert admin_b.delete(f"/trainer/jobs/{learner_job}").status_code == 404
    assert learner_job not in [j["id"] for j in admin_b.get("/trainer/jobs").json()["jobs"]]
    status_b = admin_b.get("/v1/scheduler/status").json()["scheduler"]
    assert learner_model not in [m["model_id"] for m in status_b["models_training"]]
    assert status_b["learner_models_training"] == 1
    status_a = admin.get("/v1/scheduler/status").json()["scheduler"]
    assert learner_model in [m["model_id"] for m in status_a["models_training"]]
    health = httpx.get(f"{api.base}/health").json()  # no key: no learner's model is named
    assert learner_model not in json.dumps(health)
    assert admin.post("/v1/scheduler/trigger/curriculum-generator-v1").status_code == 404

    changed = admin.put("/v1/scheduler/jobs/aivo_main_brain_daily", json={"cron": "30 1 * * 1-5"})
    assert changed.status_code == 200 and changed.json()["trigger"] == {"cron": "30 1 * * 1-5"}
    jobs = {j["id"]: j for j in admin.get("/v1/scheduler/status").json()["scheduler"]["jobs"]}
    assert jobs["aivo_main_brain_daily"]["configured_by"] == "override"
    assert "mon,tue,wed,thu,fri" in jobs["aivo_main_brain_daily"]["trigger"]
    assert admin.put("/v1/scheduler/jobs/aivo_main_brain_daily", json={"reset": True}).json()["reset"]


def test_delete_stops_a_running_job_within_seconds(api):
    admin = api.client("admin")
    body = _job_body(config={"brain": {**TINY, "max_epochs": 1000, "patience": 1000}, "hpo_trials": 0})
    job_id = admin.post("/trainer/jobs", json=body).json()["id"]
    worker = _worker(api)
    thread = threading.Thread(target=worker.run_once)
    thread.start()
    deadline = time.monotonic() + 30
    while admin.get(f"/trainer/jobs/{job_id}").json()["progress"].get("stage") != "searching":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    asked = time.monotonic()
    response = admin.delete(f"/trainer/jobs/{job_id}")
    assert response.status_code == 202 and response.json()["cancel_requested"]
    thread.join(30)
    assert time.monotonic() - asked < 5
    assert fetch_job(registry=api.registry, job_id=job_id).status == "cancelled"


def test_drift_reports_are_served(api):
    from aivo.services.drift import check_drift

    admin = api.client("service")
    empty = admin.get("/v1/model/aivo-main-brain/drift").json()
    assert empty["latest"] is None and empty["threshold"] == api.settings.drift_threshold
    report = check_drift(registry=api.registry, settings=api.settings, window_days=3650, schedule=False)
    served = admin.get("/v1/model/active/drift").json()
    assert served["latest"]["id"] == report.id and served["latest"]["version"] == report.version
    assert set(served["latest"]["signals"]) >= {"input", "prediction", "performance", "score", "components"}
    by_version = admin.get(f"/v1/model/{report.version}/drift").json()
    assert [r["id"] for r in by_version["reports"]] == [report.id]
