"""Issue 14: what a probe as an attacker and a careless client found, each case as a regression
test on SQLite and PostgreSQL against a real server on loopback."""

from __future__ import annotations

import http.client
import json
import logging
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from aivo.registry import load_interactions

PROBE = {"interactions": [{"learner_id": "b-ts1", "item_id": "i", "correct": 1, "order": 0,
                           "timestamp": "0001-01-01T00:00:00+14:00"}]}


def _rows(learner: str, n: int, *, start: int = 0, **fields) -> list[dict]:
    return [{"learner_id": learner, "item_id": f"q{(start + i) % 5}", "correct": (start + i) % 2, "order": start + i,
             "timestamp": f"2026-03-0{1 + (start + i) % 5}T10:00:00Z", **fields} for i in range(n)]


def _count(api, learner: str) -> int:
    with api.registry.engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM interactions i JOIN learners l ON l.id = i.learner_id "
                                    "WHERE l.pseudonym = :p"), {"p": api.pseudonym(learner)}).scalar_one()


def _damage_timestamp(api, learner: str, order: int) -> None:
    """Store what the old server stored for the probe (year 0 in UTC), bypassing every edge."""
    dialect = api.registry.engine.dialect.name
    value = "'0000-12-31 10:00:00.000000'" if dialect == "sqlite" else "'0001-01-01 00:00:00+14'::timestamptz"
    with api.registry.engine.begin() as conn:
        changed = conn.execute(sa.text(
            f"UPDATE interactions SET timestamp = {value} WHERE position = :o AND learner_id = "
            "(SELECT id FROM learners WHERE pseudonym = :p)"), {"o": order, "p": api.pseudonym(learner)}).rowcount
    assert changed == 1


# --- High 1: one interaction poisons the registry ---------------------------------------------------

def test_the_probe_is_refused_and_stores_nothing(api):
    with api.client("service") as c:
        r = c.post("/v1/interactions", json=PROBE)
        assert r.status_code == 422, r.text
        assert "1900-2099" in r.json()["detail"] and r.json()["errors"][0]["loc"][-1] == "timestamp"
    with api.client("admin") as c:
        assert c.get("/v1/learners/b-ts1/export").status_code == 404  # never created
    with api.registry.session(read_only=True) as session:
        assert load_interactions(session=session).num_interactions > 0


@pytest.mark.parametrize("timestamp", ["2100-01-01T00:00:00Z", "1899-12-31T23:59:59Z", "9999-12-31T23:59:59Z",
                                       "2026-03-02T09:15:00", "2026-02-30T00:00:00Z", "2026-03-02 09:15:00Z"])
def test_timestamps_outside_the_years_or_without_offset_are_refused(api, timestamp):
    row = _rows("b-ts0", 1, timestamp=timestamp)
    with api.client("service") as c:
        assert c.post("/v1/interactions", json={"interactions": row}).status_code == 422
    assert _count(api, "b-ts0") == 0


def test_edge_years_with_any_offset_are_stored_and_read_back(api):
    rows = [*_rows("b-ts9", 1, timestamp="1900-01-01T00:00:00+14:00"),
            *_rows("b-ts9", 1, start=1, timestamp="2099-12-31T23:59:59.999999-12:00")]
    with api.client("service") as c:
        assert c.post("/v1/interactions", json={"interactions": rows}).status_code == 201
    with api.registry.session(read_only=True) as session:
        log = load_interactions(session=session, learner_ids=[api.pseudonym("b-ts9")])
    assert log.num_interactions == 2 and not log.notes
    assert [t.year for t in log.frame["timestamp"]] == [1899, 2100]


def test_a_damaged_stored_timestamp_is_skipped_by_every_reader(api):
    with api.client("service") as c:
        assert c.post("/v1/interactions", json={"interactions": _rows("b-ts1", 4)}).status_code == 201
    _damage_timestamp(api, "b-ts1", 2)
    with api.client("admin") as c:
        status = c.get("/v1/learners/b-ts1")
        assert status.status_code == 200, status.text
        assert status.json()["num_interactions"] == 4
        assert status.json()["last_interaction_at"].startswith("2026-03-04")  # the damaged one is not "last"
        export = c.get("/v1/learners/b-ts1/export")
        assert export.status_code == 200, export.text
        stamps = sorted(str(r["timestamp"]) for r in export.json()["data"]["interactions"])
        assert stamps.count("None") == 1 and len(stamps) == 4
        rec = c.get("/v1/learners/b-ts1/recommendations")
        assert rec.status_code == 200, rec.text
    with api.registry.session(read_only=True) as session:
        everyone = load_interactions(session=session)  # training, drift, the pipeline: every tenant
    assert any("skipped 1 stored interaction" in note and "timestamp: 1" in note for note in everyone.notes)
    assert api.pseudonym("b-ts1") in set(everyone.frame["learner_id"])
    with api.client("admin") as c:
        assert c.delete("/v1/learners/b-ts1").status_code == 200
    assert _count(api, "b-ts1") == 0


def test_learner_export_and_delete_cli_never_show_a_traceback(api, tmp_path, run_cli):
    with api.client("service") as c:
        assert c.post("/v1/interactions", json={"interactions": _rows("b-ts2", 3)}).status_code == 201
    _damage_timestamp(api, "b-ts2", 1)
    env = {"AIVO_HOME": str(api.settings.home), "AIVO_SECRET_KEY": api.settings.secret_key}
    if api.settings.database_url:
        env["AIVO_DATABASE_URL"] = api.settings.database_url

    def cli(*args):
        return run_cli(*args, env=env, timeout=120)

    exported = cli("learner", "export", "b-ts2", "--out", str(tmp_path / "b-ts2.json"))
    assert exported.returncode == 0 and "Traceback" not in exported.stderr, exported.stderr
    assert len(json.loads((tmp_path / "b-ts2.json").read_text())["data"]["interactions"]) == 3
    deleted = cli("learner", "delete", "b-ts2", "--yes", "--json")
    assert deleted.returncode == 0 and "Traceback" not in deleted.stderr, deleted.stderr
    assert json.loads(deleted.stdout)["rows_deleted"]["interactions"] == 3


# --- 3, 4: bounds -------------------------------------------------------------------------------------

def test_order_is_bounded(api):
    with api.client("service") as c:
        for order in (2**63, 2**64 + 5, 2**53):
            assert c.post("/v1/interactions", json={"interactions": [
                {"learner_id": "b-ord", "item_id": "q", "correct": 1, "order": order}]}).status_code == 422
        assert c.post("/v1/interactions", json={"interactions": [
            {"learner_id": "b-ord", "item_id": "q", "correct": 1, "order": 2**53 - 1}]}).status_code == 201
    with api.registry.session(read_only=True) as session:
        log = load_interactions(session=session, learner_ids=[api.pseudonym("b-ord")])
    assert log.frame["order"].tolist() == [2**53 - 1]


@pytest.mark.parametrize("path", ["/v1/learners", "/v1/models", "/v1/federated/updates", "/trainer/jobs"])
def test_offsets_are_bounded(api, path):
    with api.client("admin") as c:
        for offset in (2**31, 2**63, 10**30):
            r = c.get(path, params={"offset": offset})
            assert r.status_code == 422, (offset, r.text)
        assert c.get(path, params={"offset": 2**31 - 1}).status_code == 200


@pytest.mark.parametrize("method,suffix", [("GET", ""), ("DELETE", ""), ("GET", "/evaluation"),
                                           ("POST", "/evaluate"), ("POST", "/promote")])
def test_job_ids_are_bounded_to_32_bits(api, method, suffix):
    with api.client("admin") as c:
        for job_id in (2**31, 2**63, 10**30):
            assert c.request(method, f"/trainer/jobs/{job_id}{suffix}").status_code == 422
        assert c.request(method, f"/trainer/jobs/{2**31 - 1}{suffix}").status_code == 404


def test_aggregate_dry_run_bounds_its_numbers(api):
    with api.client("admin") as c:
        for body in ({"dry_run": True, "max_stale_days": 1e300}, {"dry_run": True, "min_learners": 2**63},
                     {"dry_run": True, "strategy": "no-such-strategy"}):
            r = c.post("/v1/federated/aggregate", json=body)
            assert r.status_code == 422, r.text


# --- 5: NUL characters --------------------------------------------------------------------------------

@pytest.mark.parametrize("change", [{"item_id": "q\x00"}, {"skill_ids": "a;\x00b"}, {"extra": {"k\x00": 1}},
                                    {"extra": {"k": "v\x00"}}, {"subject": "\x00"}])
def test_nul_characters_in_a_body_are_refused(api, change):
    row = {**_rows("b-nul", 1)[0], **change}
    with api.client("service") as c:
        r = c.post("/v1/interactions", json={"interactions": [row]})
    assert r.status_code == 422 and "NUL" in r.json()["detail"], r.text
    assert _count(api, "b-nul") == 0


def test_nul_characters_in_a_baseline_a_path_or_a_query_are_refused(api):
    answer = {"item_id": "q1", "correct": 1, "order": 0, "skill_ids": "x\x00"}
    with api.client("admin") as c:
        r = c.post("/v1/learners/b-nul2/baseline", json={"answers": [answer]})
        assert r.status_code == 422 and "NUL" in r.json()["detail"]
        assert c.get("/v1/learners/L001%00").status_code == 422
        assert c.get("/trainer/jobs", params={"status": "queued\x00"}).status_code == 422
        assert c.delete("/v1/learners/L001", params={"reason": "a\x00b"}).status_code == 422
        assert c.get("/v1/learners/L001").status_code == 200  # not erased
    # the text "\u0000" (an escaped backslash, then u0000) is not a NUL
    with api.client("service") as c:
        body = json.dumps({"interactions": [{**_rows("b-nul3", 1)[0], "extra": {"note": "\\u0000"}}]})
        r = c.post("/v1/interactions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 201, r.text


# --- 7: one answer for another tenant's learner and a missing one ------------------------------------

def test_scheduler_trigger_answers_other_tenants_like_missing_learners(api):
    with api.client("admin") as c:
        other = c.post("/v1/scheduler/trigger/learner:BL000")
        missing = c.post("/v1/scheduler/trigger/learner:nobody-at-all")
    assert other.status_code == missing.status_code == 404
    assert other.json() == missing.json()


# --- 8: extra keeps JSON types; non-finite numbers and big values are refused -----------------------

def test_extra_keeps_json_types(api):
    extra = {"flag": False, "count": 3, "ratio": 2.5, "note": "text", "none": None, "big": 2**62}
    with api.client("service") as c:
        assert c.post("/v1/interactions", json={"interactions": _rows("b-x", 1, extra=extra)}).status_code == 201
    with api.client("admin") as c:
        rows = c.get("/v1/learners/b-x/export").json()["data"]["interactions"]
    stored = rows[0]["extra"]
    stored = json.loads(stored) if isinstance(stored, str) else stored
    assert stored == {k: v for k, v in extra.items() if v is not None}
    assert stored["flag"] is False and type(stored["count"]) is int


@pytest.mark.parametrize("fields", ['"response_time_s": Infinity', '"response_time_s": 1e400',
                                    '"response_time_s": NaN', '"extra": {"x": NaN}', '"extra": {"x": -Infinity}',
                                    '"extra": {"x": "' + "y" * 1025 + '"}', '"grade": false',
                                    '"extra": {"p_true": 0.5}', '"extra": {"correct": 1}',
                                    '"extra": {"x": 9223372036854775999}', '"extra": {"x": 1e20}'])
def test_non_finite_numbers_big_values_and_coercions_are_refused(api, fields):
    body = '{"interactions": [{"learner_id": "b-inf", "item_id": "q", "correct": 1, "order": 0, ' + fields + "}]}"
    with api.client("service") as c:
        r = c.post("/v1/interactions", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 422, (fields, r.text)
        for coerced in ('"correct": true, "order": 0', '"correct": "1", "order": 0', '"correct": 1, "order": "1"',
                        '"correct": 1, "order": 1.5'):
            row = '{"learner_id": "b-inf", "item_id": "q", ' + coerced + "}"
            r = c.post("/v1/interactions", content='{"interactions": [' + row + "]}",
                       headers={"content-type": "application/json"})
            assert r.status_code == 422, (coerced, r.text)
    assert _count(api, "b-inf") == 0


def test_baseline_parses_strictly(api):
    with api.client("service") as c:
        r = c.post("/v1/learners/b-strict/baseline",
                   json={"answers": [{"item_id": "q1", "correct": 1, "order": 0}], "reset_clone": 0})
    assert r.status_code == 422 and "reset_clone" in r.json()["detail"]


def test_whole_numbers_written_as_floats_are_integers_on_every_endpoint(api):
    """JSON Schema's integer includes 12.0 (schemathesis' stateful run found the baseline refusing
    it); 12.5, "12" and true stay refused (test above). Stored as the integers they are."""
    body = ('{"interactions": [{"learner_id": "b-float", "item_id": "q", "correct": 1.0, "order": 12.0, '
            '"grade": 10.0}]}')
    baseline = '{"answers": [{"item_id": "q1", "correct": 0.0, "order": 3.0, "grade": 4.0}]}'
    with api.client("service") as c:
        r = c.post("/v1/interactions", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 201, r.text
        r = c.post("/v1/learners/b-float2/baseline", content=baseline, headers={"content-type": "application/json"})
        assert r.status_code not in (400, 422), r.text
        assert c.post("/v1/learners/b-float3/baseline", headers={"content-type": "application/json"},
                      content=baseline.replace("3.0", "3.5")).status_code == 422
    with api.client("admin") as c:
        rows = c.get("/v1/learners/b-float/export").json()["data"]["interactions"]
    assert [(row["position"], row["correct"], row["grade"]) for row in rows] == [(12, 1, 10)]
    assert all(type(rows[0][k]) is int for k in ("position", "correct", "grade"))


# --- 9, 10: logs without raw ids; keep-alive after a 500 ------------------------------------------------

def test_a_bug_is_logged_with_the_route_and_pseudonym_and_keeps_the_connection(api, monkeypatch, caplog):
    from aivo.api.routers import learners as learners_router

    def broken(**kwargs):
        raise RuntimeError("a bug for the test")

    monkeypatch.setattr(learners_router, "learner_status", broken)
    parts = urlsplit(api.base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    headers = {"Authorization": f"Bearer {api.tokens['admin']}"}
    with caplog.at_level(logging.INFO):
        conn.request("GET", "/v1/learners/L003", headers=headers)
        first = conn.getresponse()
        body = json.loads(first.read())
        sock = conn.sock
        monkeypatch.undo()
        conn.request("GET", "/v1/learners/L003", headers=headers)
        second = conn.getresponse()
        second.read()
    assert first.status == 500 and body == {"detail": "internal server error (logged on the server)"}
    assert (first.getheader("connection") or "").lower() != "close"
    assert second.status == 200 and conn.sock is sock  # the same connection answered both
    conn.close()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "GET /v1/learners/{learner_id}" in text and api.pseudonym("L003") in text
    assert "L003" not in text.replace(api.pseudonym("L003"), "")
    assert sum("a bug for the test" in (r.exc_text or "") or r.exc_info is not None for r in caplog.records) == 1


# --- 11: the OpenAPI document says what the server answers -------------------------------------------

def test_openapi_documents_the_real_error_bodies(api):
    with api.client(None) as c:
        spec = c.get("/openapi.json").json()
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    ingest = spec["paths"]["/v1/interactions"]["post"]["responses"]
    for code in ("400", "401", "403", "413", "422", "500", "503"):
        assert ingest[code]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
    with api.client("service") as c:
        r = c.post("/v1/interactions", json={"interactions": [{"learner_id": "x"}]})
    assert set(r.json()) == {"detail", "errors"} and isinstance(r.json()["detail"], str)
    for path, item in spec["paths"].items():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                schema = parameter["schema"]
                strings = [schema] + schema.get("anyOf", [])
                for s in strings:
                    if s.get("type") == "string" and "enum" not in s:
                        assert "\\x00" in s.get("pattern", ""), (path, parameter["name"])


# --- 12: /health without a key ---------------------------------------------------------------------------

def test_anonymous_health_hides_the_schema_revision_and_the_lease_holder(api):
    with api.client(None) as c:
        anonymous = c.get("/health").json()
    with api.client("service") as c:
        keyed = c.get("/health").json()
    assert "schema" not in anonymous["database"]["detail"] and "schema" in keyed["database"]["detail"]
    assert "leader" not in anonymous["scheduler"] and "lease_expires_at" not in anonymous["scheduler"]
    assert "leader" in keyed["scheduler"]


# --- 4, 8: numbers inside free-form JSON options; 5: NUL in every body, however it arrives ------------

_SHEET = {"source": "hardening tests", "license": "CC0, synthetic", "collection_process": "generated by the tests",
          "pii_handling": "no real people", "intended_use": "tests of the edge"}


@pytest.mark.parametrize("body", [
    '{"datasheet": %s, "policy": {"thresholds": {"auc": NaN}}}', '{"datasheet": %s, "policy": {"x": [1, Infinity]}}',
    '{"datasheet": %s, "config": {"hpo_timeout_s": 1e400}}', '{"datasheet": %s, "config": {"seed": 1e300}}',
    '{"datasheet": %s, "config": {"brain": {"embed_dim": 1099511627776}}}',
    '{"datasheet": %s, "config": {"since": "0001-01-01T00:00:00+14:00"}}'])
def test_numbers_inside_job_options_are_finite_and_bounded(api, body):
    """A job's config and policy are free-form JSON: `allow_inf_nan=False` did not reach into them
    (NaN/Infinity were queued, and PostgreSQL's JSONB cannot hold them), nor did any bound."""
    with api.client("admin") as c:
        jobs_before = c.get("/trainer/jobs").json()["total"]  # a baseline earlier in this module queues one
        r = c.post("/trainer/jobs", content=body % json.dumps(_SHEET), headers={"content-type": "application/json"})
        assert r.status_code == 422, r.text
        evaluate = c.post(f"/trainer/jobs/{2**31 - 1}/evaluate", content='{"policy": {"thresholds": {"auc": NaN}}}',
                          headers={"content-type": "application/json"})
        assert evaluate.status_code == 422 and "finite" in evaluate.json()["detail"], evaluate.text
        assert c.get("/trainer/jobs").json()["total"] == jobs_before


@pytest.mark.parametrize("method,path,body", [
    ("POST", "/v1/model/no-such-version/promote", {"reason": "a\x00b"}),
    ("PUT", "/v1/scheduler/jobs/aivo_main_brain_daily", {"cron": "0 2 * * *\x00"}),
    ("POST", "/trainer/jobs", {"datasheet": {**_SHEET, "source": "x\x00"}}),
    ("POST", "/trainer/jobs", {"datasheet": _SHEET, "config": {"tenant\x00": "a"}}),
    ("POST", "/v1/federated/aggregate", {"dry_run": True, "reason": "\x00"}),
])
def test_nul_characters_are_refused_in_every_body_not_only_interactions(api, method, path, body):
    """Interactions also meet a NUL check in the frame validation; these bodies have only the
    request guard (a NUL here was a psycopg DataError, a 500, on PostgreSQL)."""
    with api.client("admin") as c:
        r = c.request(method, path, json=body)
    assert r.status_code == 422 and "NUL" in r.json()["detail"], r.text


def test_a_nul_escape_split_across_two_chunks_of_a_streamed_body_is_refused(api):
    """The guard reads a streamed body chunk by chunk: an escape cut in two must still be seen;
    an escaped backslash before `u0000` is text, not a NUL."""
    parts = urlsplit(api.base)

    def send(chunks: list[bytes]) -> tuple[int, dict]:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        conn.putrequest("POST", "/v1/model/no-such-version/promote")  # 404 unless refused
        conn.putheader("Authorization", f"Bearer {api.tokens['admin']}")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        for chunk in chunks:
            conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            conn.sock.settimeout(30)
        conn.send(b"0\r\n\r\n")
        response = conn.getresponse()
        answer = response.status, json.loads(response.read())
        conn.close()
        return answer

    status, body = send([b'{"reason": "a\\u00', b'00b"}'])
    assert status == 422 and "NUL" in body["detail"], body
    status, body = send([b'{"reason": "a\\\\u00', b'00b"}'])  # "a\\u0000b": a backslash, then text
    assert status == 404, body  # read as text, reached the route


@pytest.mark.parametrize("body", ['{"rounds": "3"}', '{"rounds": true}', '{"rounds": 1.5}', '{"min_sites": 1e30}',
                                  '{"min_sites": 100000000000000000000}', '{"rounds": 1, "junk": 1}',
                                  '{"secure_aggregation": "false"}'])
def test_a_federation_run_parses_strictly_and_bounds_its_numbers(api, body):
    """POST /v1/federation/runs was the one request body outside the strict models: "3" and true
    were 3 and 1, unknown fields were dropped and min_sites had no upper bound."""
    with api.client("admin") as c:
        r = c.post("/v1/federation/runs", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 422, (body, r.text)
        # a whole number written as a float is that number: the body is valid, and this registry
        # (which holds interactions) cannot coordinate
        valid = c.post("/v1/federation/runs", content='{"rounds": 2.0, "min_sites": 3.0}',
                       headers={"content-type": "application/json"})
        assert valid.status_code == 409, valid.text


@pytest.mark.parametrize("value,status", [("1e30", 422), ("9223372036854775999", 422), ("-1e19", 422),
                                          ("9223372036854775807", 422), ("9223372036854774784", 201), ("2.5", 201),
                                          ("12.0", 201)])
def test_whole_numbers_in_extra_are_held_to_64_bits_however_written(api, value, status):
    """The schema said any JSON number (so 2^63 + 191) was valid and the server refused it (the
    fuzzer found it); now schema and server agree: a whole number, as an integer or written as a
    float, fits in 64 bits."""
    row = '{"learner_id": "b-x64", "item_id": "q", "correct": 1, "order": %d, "extra": {"n": %s}}'
    with api.client("service") as c:
        order = abs(hash(value)) % 1000
        r = c.post("/v1/interactions", content='{"interactions": [' + row % (order, value) + "]}",
                   headers={"content-type": "application/json"})
        assert r.status_code == status, r.text
        spec = c.get("/openapi.json").json()
    extra = spec["components"]["schemas"]["AttemptFields"]["properties"]["extra"]["anyOf"][0]
    branches = extra["additionalProperties"]["anyOf"]
    assert {"type": "number", "not": {"type": "integer"}} in branches
    integer = next(b for b in branches if b.get("type") == "integer")
    assert int(integer["maximum"]) == integer["maximum"] == 2**63 - 1024  # published exactly as enforced


@pytest.mark.parametrize("path,methods", [("/v1/learners/L001", {"GET", "DELETE"}),
                                          ("/v1/federation/sites", {"GET", "POST"}),
                                          (f"/trainer/jobs/{2**31 - 1}", {"GET", "DELETE"})])
def test_a_405_lists_every_method_of_the_path(api, path, methods):
    """Paths served by two routes answered `Allow: GET` only (schemathesis' Allow header check)."""
    with api.client("admin") as c:
        r = c.request("OPTIONS", path)
    assert r.status_code == 405
    allowed = {m.strip() for m in r.headers["allow"].split(",")}
    assert methods <= allowed and "OPTIONS" not in allowed
