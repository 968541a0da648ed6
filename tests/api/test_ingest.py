"""POST /v1/interactions against a real server: stored pseudonymized and scrubbed, idempotent,
and bad input answered 4xx with a clear message and nothing written."""

from __future__ import annotations

import json

import httpx
import pytest
import sqlalchemy as sa

from aivo.registry import count_interactions

# One recommender process: cache misses are computed out of the API process here.
SETTINGS_OVERRIDES = {"max_ingest_batch": 50, "pii_names": "Maria Lopez", "recommender_processes": 1}


def _rows(learner: str, n: int, *, start: int = 0, **extra) -> list[dict]:
    return [{"learner_id": learner, "item_id": f"q{i % 5}", "skill_ids": "s1;s2", "correct": i % 2,
             "order": start + i, "timestamp": f"2026-03-0{1 + i % 5}T10:00:00Z", "response_time_s": 3.5,
             "grade": 4, **extra} for i in range(n)]


def _count(api, raw_id: str | None = None) -> int:
    with api.registry.session(read_only=True) as session:
        if raw_id is None:
            return count_interactions(session=session)
        return count_interactions(session=session, learner_id=api.pseudonym(raw_id))


def test_ingest_stores_pseudonymized_scrubbed_rows(api):
    rows = _rows("ingest-1", 6, extra={"note": "Maria Lopez wrote from maria@example.org, call 555-123-4567"})
    with api.client("service") as c:
        r = c.post("/v1/interactions", json={"interactions": rows})
    assert r.status_code == 201, r.text
    assert r.json() == {"received": 6, "inserted": 6, "skipped": 0, "learners": 1, "learners_created": 1,
                        "tenant": "school-a"}
    assert _count(api, "ingest-1") == 6
    with api.registry.engine.connect() as conn:
        pseudonyms = set(conn.execute(sa.text("SELECT pseudonym FROM learners")).scalars())
        notes = {json.dumps(e) for e in conn.execute(sa.text("SELECT extra FROM interactions WHERE extra IS NOT NULL"))
                 .scalars()}
    assert "ingest-1" not in pseudonyms and api.pseudonym("ingest-1") in pseudonyms
    text = " ".join(notes)
    assert "maria@example.org" not in text and "555-123-4567" not in text and "Maria Lopez" not in text
    assert "[EMAIL]" in text and "[PHONE]" in text and "[NAME]" in text
    with api.client("admin") as c:
        status = c.get("/v1/learners/ingest-1").json()
    assert status["tenant"] == "school-a" and status["num_interactions"] == 6


def test_resending_a_batch_is_idempotent(api):
    rows = _rows("ingest-2", 4)
    with api.client("service") as c:
        assert c.post("/v1/interactions", json={"interactions": rows}).json()["inserted"] == 4
        again = c.post("/v1/interactions", json={"interactions": rows + _rows("ingest-2", 1, start=4)}).json()
    assert (again["inserted"], again["skipped"]) == (1, 4)
    assert _count(api, "ingest-2") == 5


def _refused(api, body: bytes | dict, status: int, message: str, *, role: str = "service") -> None:
    before = _count(api)
    with api.client(role) as c:
        if isinstance(body, dict):
            r = c.post("/v1/interactions", json=body)
        else:
            r = c.post("/v1/interactions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert message in r.json()["detail"], r.json()
    assert _count(api) == before  # nothing written


def test_malformed_json_is_400(api):
    _refused(api, b'{"interactions": [{"learner_id": "x",', 400, "malformed JSON body")


def test_one_bad_row_refuses_the_whole_batch(api):
    rows = _rows("ingest-3", 5)
    rows[3]["correct"] = 7
    _refused(api, {"interactions": rows}, 422, "interactions[3].correct")
    rows = _rows("ingest-3", 5)
    del rows[2]["order"]
    _refused(api, {"interactions": rows}, 422, "interactions[2].order: Field required")
    _refused(api, {"interactions": _rows("ingest-3", 2, unknown_field=1)}, 422, "Extra inputs are not permitted")
    _refused(api, {"interactions": []}, 422, "interactions")
    _refused(api, {"interactions": _rows("ingest-3", 2) + _rows("ingest-3", 1)}, 422, "two interactions at order 0")
    clash = _rows("ingest-3", 2, extra={"correct": 1})
    _refused(api, {"interactions": clash}, 422, "clash with interaction fields")


def test_oversized_batch_is_413(api):
    _refused(api, {"interactions": _rows("ingest-4", 51)}, 413, "at most 50 per request")


def test_oversized_body_is_413_before_parsing(api):
    limit = 16 << 20
    with api.client("service") as c:
        r = c.post("/v1/interactions", content=b" " * (limit + 1), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "request body larger than" in r.json()["detail"]


def test_another_tenants_learner_is_refused(api):
    """B-tenant learner ids sent with a tenant-A key: refused whole, nothing written."""
    rows = _rows("new-learner-5", 2) + _rows("BL000", 2, start=1000)
    _refused(api, {"interactions": rows}, 409, "belong to another tenant")
    assert _count(api, "new-learner-5") == 0


def test_unknown_learner_is_404(api):
    with api.client("admin") as c:
        r = c.get("/v1/learners/never-seen")
    assert r.status_code == 404 and "learner not found" in r.json()["detail"]


def test_ingested_interactions_reach_recommendations(api):
    with api.client("service") as c:
        first = c.get("/v1/learners/L006/recommendations")
        assert first.status_code == 200, first.text
        assert c.get("/v1/learners/L006/recommendations").json()["cached"] is True
        count = c.get("/v1/learners/L006").json()["num_interactions"]
        c.post("/v1/interactions", json={"interactions": _rows("L006", 3, start=count)}).raise_for_status()
        after = c.get("/v1/learners/L006/recommendations").json()
    assert after["cached"] is False  # new interactions invalidate the cached recommendation


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded"])
def test_non_json_body_is_4xx(api, ctype):
    with api.client("service") as c:
        r = c.post("/v1/interactions", content=b"learner_id=x", headers={"content-type": ctype})
    assert 400 <= r.status_code < 500 and r.json()["detail"]


def test_client_without_content_length_is_limited_too(api):
    def chunks():
        for _ in range(17):
            yield b" " * (1 << 20)

    with httpx.Client(base_url=api.base, headers={"X-API-Key": api.tokens["service"]}, timeout=30) as c:
        r = c.post("/v1/interactions", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
