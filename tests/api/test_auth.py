"""Keys, roles and tenants against a real server: 401 without a valid key, 403 for the wrong role,
404 for another tenant's learner (exactly like a learner that does not exist)."""

from __future__ import annotations

import httpx
import pytest

from aivo.registry.api_keys import create_api_key, revoke_api_key, verify_api_key
from aivo.errors import AuthError

MOUNT_TUTOR = True  # the tutor's routes sit behind the same keys (its model is never loaded here)


@pytest.mark.parametrize("path", ["/stats", "/metrics", "/v1/models", "/v1/learners/L001",
                                  "/v1/learners/L001/recommendations", "/v1/federated/updates",
                                  "/v1/tutor/health"])
def test_missing_key_is_401_everywhere_but_health(api, path):
    r = httpx.get(api.base + path)
    assert r.status_code == 401, r.text
    assert "missing API key" in r.json()["detail"]
    assert r.headers["www-authenticate"] == "Bearer"
    assert httpx.get(api.base + "/health").status_code == 200


def test_anonymous_post_is_401_before_the_body_is_read(api):
    r = httpx.post(api.base + "/v1/interactions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 401


def test_bad_tokens_are_401_with_one_message(api):
    good = api.tokens["admin"]
    tampered = good[:-1] + ("A" if good[-1] != "A" else "B")
    for token in ["nonsense", "aivo_000000000000_" + "x" * 43, tampered, good + "x"]:
        r = httpx.get(api.base + "/v1/models", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401
        assert r.json()["detail"] == "invalid or revoked API key"
    assert httpx.get(api.base + "/v1/models", headers={"X-API-Key": good}).status_code == 200


def test_revoked_key_is_refused(api):
    with api.registry.session() as session:
        created = create_api_key(session=session, role="service", tenant="school-a", actor="tests")
    with api.client(token=created.token) as c:
        assert c.get("/v1/models").status_code == 200
        with api.registry.session() as session:
            revoke_api_key(session=session, key_id=created.key.key_id, actor="tests")
        assert c.get("/v1/models").status_code == 401  # AIVO_API_KEY_CACHE_S=0 in the tests
    with api.registry.session(read_only=True) as session, pytest.raises(AuthError):
        verify_api_key(session=session, token=created.token)


@pytest.mark.parametrize("role, method, path, body", [
    ("teacher", "GET", "/stats", None),
    ("teacher", "GET", "/v1/models", None),
    ("teacher", "POST", "/v1/interactions", {"interactions": [
        {"learner_id": "L001", "item_id": "q1", "correct": 1, "order": 999}]}),
    ("service", "DELETE", "/v1/learners/L003", None),
    ("service", "GET", "/v1/learners/L003/export", None),
    ("service", "POST", "/v1/model/aivo-main-v1/promote", {"reason": "x"}),
    ("service", "POST", "/v1/models/rollback", {"reason": "x"}),
    ("teacher", "GET", "/dashboard/models", None),
])
def test_wrong_role_is_403_and_changes_nothing(api, role, method, path, body):
    with api.client(role) as c:
        r = c.request(method, path, json=body)
    assert r.status_code == 403, r.text
    assert f"this is a {role} key" in r.json()["detail"]
    with api.client("admin") as c:
        assert c.get("/v1/learners/L003").status_code == 200  # still there
        assert c.get("/v1/learners/L001").json()["num_interactions"] < 999


@pytest.mark.parametrize("role", ["admin_b", "service_b"])
@pytest.mark.parametrize("method, path", [("GET", "/v1/learners/L001"), ("GET", "/v1/learners/L001/recommendations"),
                                          ("GET", "/v1/learners/L001/export"), ("DELETE", "/v1/learners/L001")])
def test_another_tenants_learner_is_404_like_an_unknown_one(api, role, method, path):
    with api.client(role) as c:
        other = c.request(method, path)
        unknown = c.request(method, path.replace("L001", "nobody-has-this-id"))
    if role == "service_b" and (method == "DELETE" or path.endswith("/export")):
        assert other.status_code == unknown.status_code == 403  # the role check comes first
        return
    assert other.status_code == unknown.status_code == 404
    assert other.json() == unknown.json()
    with api.client("admin") as c:
        assert c.get("/v1/learners/L001").status_code == 200


def test_tenant_b_lists_only_its_learners(api):
    with api.client("admin_b") as c:
        listed = c.get("/v1/learners").json()
    assert {x["tenant"] for x in listed} == {"school-b"} and len(listed) == 3
    assert api.pseudonym("BL000") in {x["learner_id"] for x in listed}


def test_teacher_reads_only_its_class_list(api):
    with api.client("teacher") as c:
        assert c.get("/v1/learners/L001/recommendations").status_code == 200
        assert c.get("/v1/learners/L002").status_code == 200
        refused = c.get("/v1/learners/L005/recommendations")
        assert refused.status_code == 403 and "not linked" in refused.json()["detail"]
        assert c.get("/v1/learners/BL000").status_code == 404  # another tenant: as if unknown
        listed = {x["learner_id"] for x in c.get("/v1/learners").json()}
    assert listed == {api.pseudonym("L001"), api.pseudonym("L002")}


def test_pseudonym_in_the_url(api):
    with api.client("admin") as c:
        by_raw = c.get("/v1/learners/L004").json()
        by_pseudonym = c.get(f"/v1/learners/{api.pseudonym('L004')}", params={"pseudonym": "true"}).json()
        assert c.get(f"/v1/learners/{api.pseudonym('L004')}").status_code == 404  # not a raw id
    assert by_raw == by_pseudonym and by_raw["learner_id"] == api.pseudonym("L004")


def test_tutor_routes_use_the_same_guard(api):
    """The tutor names learners by pseudonym; another tenant's is 404, a teacher may not clone."""
    other = api.pseudonym("BL000")
    with api.client("admin") as c:
        r = c.post("/v1/generate", json={"prompt": "What is a fraction?", "context": {"student_id": other}})
        assert r.status_code == 404, r.text
    with api.client("teacher") as c:
        r = c.post("/v1/clone/start", json={"student_id": api.pseudonym("L001")})
        assert r.status_code == 403, r.text
        assert "this is a teacher key" in r.json()["detail"]
        assert c.get("/v1/tutor/health").status_code == 200
