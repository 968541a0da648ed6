"""Learner export (everything held) and erasure (everything removed, anonymous audit entry)."""

from __future__ import annotations

import base64
import json

import pandas as pd
import pytest
import sqlalchemy as sa

from aivo.data.schema import make_log
from aivo.errors import NotFoundError
from aivo.registry import (
    count_interactions,
    delete_learner,
    export_learner,
    get_learner,
    get_statistics,
    import_interactions,
    list_audit,
    promote_main_version,
    record_training_session,
    register_learner_model,
    verify_registry,
)
from tests.registry.helpers import add_version, stored

KEY = b"s" * 32


def _pseudonym(raw: str) -> str:
    from aivo.data.privacy import pseudonymize_learner_id

    return pseudonymize_learner_id(raw, key=KEY)


@pytest.fixture
def two_learners(registry, clock):
    """alice and bob with interactions, brain + tutor models and sessions; one artifact shared."""
    store = registry.store
    frame = pd.DataFrame({"learner_id": ["alice"] * 3 + ["bob"] * 2, "item_id": list("abcab"),
                          "correct": [1, 0, 1, 1, 1]})
    with registry.session() as s:
        add_version(s, store, "v1", clock=clock)
        promote_main_version(session=s, version="v1", actor="t", reason="setup", clock=clock)
        import_interactions(session=s, log=make_log(frame), secret_key=KEY)
        shared = stored(store, "initial-head")  # identical clone heads: one artifact, two rows
        for raw in ("alice", "bob"):
            register_learner_model(session=s, store=store, learner_id=_pseudonym(raw), source_version="v1",
                                   artifact=shared, clock=clock)
        register_learner_model(session=s, store=store, learner_id=_pseudonym("alice"), source_version="v1",
                               artifact=stored(store, "alice-adapter"), kind="tutor", clock=clock)
        record_training_session(session=s, store=store, learner_id=_pseudonym("alice"), epochs=2, batch_size=4,
                                samples=3, update_artifact=stored(store, "alice-delta"), clock=clock)
    return shared


def test_export_holds_everything(registry, two_learners):
    alice = _pseudonym("alice")
    with registry.session(read_only=True) as s:
        doc = export_learner(session=s, store=registry.store, learner_id=alice, inline_artifacts=True)
    json.dumps(doc)  # JSON-ready
    assert doc["format"] == "aivo.learner-export/1" and doc["learner"]["learner_id"] == alice
    assert {t: len(rows) for t, rows in doc["data"].items()} == {
        "interactions": 3, "learner_models": 2, "training_sessions": 1}
    assert [r["item_id"] for r in doc["data"]["interactions"]] == ["a", "b", "c"]
    assert "bob" not in json.dumps(doc) and _pseudonym("bob") not in json.dumps(doc)
    by_digest = {a["sha256"]: a for a in doc["artifacts"]}
    assert len(by_digest) == 3 and by_digest[two_learners.sha256]["referenced_by"] == [
        "learner_models.artifact_sha256"]
    for digest, entry in by_digest.items():
        assert base64.b64decode(entry["content_base64"]) == registry.store.get_bytes(digest)
    with registry.session(read_only=True) as s:
        listed = export_learner(session=s, store=registry.store, learner_id=alice)
        assert all("content_base64" not in a and a["size"] == 256 for a in listed["artifacts"])
        with pytest.raises(NotFoundError):
            export_learner(session=s, store=registry.store, learner_id="nobody")


def test_delete_removes_rows_and_unshared_artifacts(registry, two_learners):
    alice, bob = _pseudonym("alice"), _pseudonym("bob")
    with registry.session(read_only=True) as s:
        alice_digests = {a["sha256"] for a in export_learner(session=s, store=registry.store,
                                                             learner_id=alice)["artifacts"]}
    with registry.session() as s:
        result = delete_learner(session=s, store=registry.store, learner_id=alice, actor="dpo",
                                reason="parent request")
        assert all(registry.store.exists(d) for d in alice_digests)  # nothing deleted before the commit
    assert result.rows_deleted == {"interactions": 3, "learner_models": 2, "learners": 1, "training_sessions": 1}
    assert result.artifacts_scheduled == 2  # the shared clone head is still bob's
    assert registry.store.exists(two_learners.sha256)
    assert [d for d in alice_digests if registry.store.exists(d)] == [two_learners.sha256]
    with registry.session(read_only=True) as s:
        with pytest.raises(NotFoundError):
            get_learner(session=s, learner_id=alice)
        assert count_interactions(session=s) == 2 and get_learner(session=s, learner_id=bob)
        stats = get_statistics(session=s)
        assert (stats.total_learner_models, stats.total_training_sessions) == (1, 0)
        assert verify_registry(session=s, store=registry.store).ok
        (entry,) = list_audit(session=s, action="learner.delete")
        dump = s.execute(sa.text("SELECT * FROM audit_log")).all()
    assert (entry.actor, entry.reason, entry.target) == ("dpo", "parent request", None)
    assert entry.details["rows_deleted"]["interactions"] == 3
    assert alice not in str(dump) and "alice" not in str(dump)  # no personal data in the audit log


def test_delete_rolled_back_keeps_artifacts(registry, two_learners):
    alice = _pseudonym("alice")
    with pytest.raises(RuntimeError), registry.session() as s:
        result = delete_learner(session=s, store=registry.store, learner_id=alice, actor="x")
        raise RuntimeError("abort")
    assert all(registry.store.exists(d) for d in result.scheduled_digests)
    with registry.session(read_only=True) as s:
        assert get_learner(session=s, learner_id=alice).learner_id == alice
