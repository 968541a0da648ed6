"""The coordinator's federation endpoints on a real server (SQLite and PostgreSQL)."""

from __future__ import annotations

from aivo.sites.identity import generate_key_pair


def test_enroll_list_revoke_and_status(api, tmp_path):
    key = generate_key_pair(tmp_path / "north.key", tmp_path / "north.pub")
    other = generate_key_pair(tmp_path / "other.key", tmp_path / "other.pub")
    with api.client("admin") as admin, api.client("service") as service, api.client("teacher") as teacher:
        created = admin.post("/v1/federation/sites", json={"name": "north", "public_key": key})
        assert created.status_code == 201, created.text
        assert created.json()["status"] == "enrolled" and "public_key" not in created.json()
        assert admin.post("/v1/federation/sites", json={"name": "north", "public_key": key}).status_code == 201
        clash = admin.post("/v1/federation/sites", json={"name": "north", "public_key": other})
        assert clash.status_code == 409 and "another key" in clash.json()["detail"]
        bad = admin.post("/v1/federation/sites", json={"name": "south", "public_key": "ssh-rsa nonsense"})
        assert bad.status_code in (400, 422) and "public key" in bad.text
        # the line's shape is in the OpenAPI pattern; the key inside it is checked by the key parser
        shaped = admin.post("/v1/federation/sites", json={"name": "south", "public_key": "ecdsa-sha2-nistp384 AAAAx"})
        assert shaped.status_code == 422 and "not an OpenSSH public key" in shaped.json()["detail"]
        bad_name = admin.post("/v1/federation/sites", json={"name": "no spaces", "public_key": key})
        assert bad_name.status_code in (400, 422)
        unknown = admin.post("/v1/federation/sites", json={"name": "south", "public_key": key, "role": "admin"})
        assert unknown.status_code == 422 and "role" in unknown.text  # unknown fields are refused, not ignored
        assert teacher.post("/v1/federation/sites", json={"name": "x", "public_key": key}).status_code == 403
        assert service.post("/v1/federation/sites", json={"name": "x", "public_key": key}).status_code == 403
        sites = service.get("/v1/federation/sites").json()
        assert [s["name"] for s in sites] == ["north"]
        status = service.get("/v1/federation/status").json()
        assert status["sites"][0]["name"] == "north" and status["rounds"] == []
        assert status["interactions"] > 0  # this test registry is an embedded one
        revoked = admin.delete("/v1/federation/sites/north")
        assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
        assert admin.delete("/v1/federation/sites/nobody").status_code == 404
        assert service.get("/v1/federation/rounds").json() == []


def test_a_run_is_refused_on_a_registry_that_holds_interactions(api):
    with api.client("admin") as admin:
        response = admin.post("/v1/federation/runs", json={"rounds": 1})
        openapi = admin.get("/openapi.json").json()
        one_site = admin.post("/v1/federation/runs", json={"rounds": 1, "min_sites": 1})  # secure by default
    assert one_site.status_code == 422 and "at least 2 sites" in one_site.json()["detail"], one_site.text
    assert response.status_code == 409, response.text
    assert "a coordinator holds none" in response.json()["detail"]
    # the 409 and the key line's pattern are in the OpenAPI document (schemathesis found both missing)
    assert "409" in openapi["paths"]["/v1/federation/runs"]["post"]["responses"]
    key_schema = openapi["components"]["schemas"]["SiteEnroll"]["properties"]["public_key"]
    assert key_schema["pattern"].startswith("^") and "ecdsa-sha2-nistp" in key_schema["pattern"]
