"""Tutor safety alerts over HTTP: a self-harm message raises an alert for the learner's school,
visible to admin and counsellor keys of that tenant and to a teacher linked to the learner,
never to another tenant or a service key; acknowledgements and reads are audited."""

from __future__ import annotations

import sqlalchemy as sa

from aivo.registry.api_keys import create_api_key

MOUNT_TUTOR = True


def _counsellor(api, tenant: str = "school-a") -> str:
    with api.registry.session() as session:
        return create_api_key(session=session, role="counsellor", tenant=tenant, name="counsellor",
                              actor="tests").token


def test_self_harm_message_raises_an_audited_alert(api):
    counsellor = _counsellor(api)
    # a raw learner id, as the rest of the API takes them (the docs' example shape)
    with api.client("service") as c:
        r = c.post("/v1/generate", json={"prompt": "honestly i just want to unalive myself tonight",
                                         "context": {"student_id": "L001", "grade": "7"}})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["safety"]["blocked"] and body["safety"]["category"] == "self_harm"
        assert "988" in body["response"] and body["usage"]["total_tokens"] == 0
        # an ordinary question raises nothing (and is not answered here: no model in this app)
        assert c.get("/v1/tutor/alerts").status_code == 403  # service keys do not read alerts

    with api.client(token=counsellor) as c:
        alerts = c.get("/v1/tutor/alerts").json()
    mine = [a for a in alerts if a["learner_id"] == api.pseudonym("L001")]
    assert len(mine) == 1
    alert = mine[0]
    assert alert["category"] == "self_harm" and alert["stage"] == "input" and len(alert["excerpt"]) <= 160
    assert "L001" not in str(alert)  # the raw id never leaves the server

    with api.client("teacher") as c:  # linked to L001 and L002
        assert alert["id"] in {a["id"] for a in c.get("/v1/tutor/alerts").json()}
    with api.client("admin_b") as c:  # another school
        assert alert["id"] not in {a["id"] for a in c.get("/v1/tutor/alerts").json()}
        assert c.post(f"/v1/tutor/alerts/{alert['id']}/acknowledge").status_code == 404

    with api.client(token=counsellor) as c:
        page = c.get("/dashboard/alerts")
        assert page.status_code == 200 and "self_harm" in page.text and "unalive" in page.text
        r = c.post(f"/v1/tutor/alerts/{alert['id']}/acknowledge")
        assert r.status_code == 200 and r.json()["acknowledged_at"]
        assert c.post(f"/v1/tutor/alerts/{alert['id']}/acknowledge").status_code == 409
        assert alert["id"] not in {a["id"] for a in c.get("/v1/tutor/alerts").json()}
        assert alert["id"] in {a["id"] for a in c.get("/v1/tutor/alerts",
                                                      params={"include_acknowledged": "true"}).json()}
        # a counsellor reads alerts, not learners' records
        assert c.get("/v1/learners/L001").status_code == 403

    with api.registry.engine.connect() as conn:
        actions = [row[0] for row in conn.execute(sa.text(
            "SELECT action FROM audit_log WHERE action LIKE 'tutor.safety_alert.%' ORDER BY id"))]
        details = " ".join(str(row[0]) for row in conn.execute(sa.text(
            "SELECT details FROM audit_log WHERE action LIKE 'tutor.safety_alert.%'")))
    assert {"tutor.safety_alert.raised", "tutor.safety_alert.listed", "tutor.safety_alert.acknowledged"} <= set(actions)
    assert api.pseudonym("L001") not in details and "unalive" not in details


def test_unknown_learner_in_generate_is_a_clear_404(api):
    with api.client("admin") as c:
        r = c.post("/v1/generate", json={"prompt": "What is a fraction?", "context": {"student_id": "student123"}})
    assert r.status_code == 404 and "as your school system knows it" in r.json()["detail"]


def test_openai_surface_answers_an_unusable_learner_with_its_400(api):
    """Found by the fuzzer: an empty learner id made a 422 in OpenAI's error shape, which the schema
    documents only as 400 (OpenAI answers invalid requests 400; it has no 422)."""
    with api.client("admin") as c:
        r = c.post("/openai/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}],
                                                        "aivo_context": {"student_id": ""}})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["type"] == "invalid_request_error" and "empty learner id" in r.json()["error"]["message"]
