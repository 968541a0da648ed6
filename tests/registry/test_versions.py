"""Main versions: register, list, promote, roll back, archive; one active, audited."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError as DBIntegrityError

from aivo.errors import ConflictError, DataError, IntegrityError, NotFoundError
from aivo.registry import (
    ArtifactRef,
    archive_main_version,
    get_active_main_version,
    get_main_version,
    list_audit,
    list_main_versions,
    next_main_version_name,
    promote_main_version,
    register_main_version,
    rollback_main_version,
)
from aivo.registry.tables import MainModelVersion
from tests.registry.helpers import add_version, stored


def test_register_and_read_back(registry, clock):
    with registry.session() as s:
        v1 = add_version(s, registry.store, "aivo-main-v1", clock=clock)
        v2 = add_version(s, registry.store, "aivo-main-v2", clock=clock, parent="aivo-main-v1",
                         metrics={"auc": 0.75})
    assert v1.status == "candidate" and v2.parent_version == "aivo-main-v1"
    with registry.session(read_only=True) as s:
        got = get_main_version(session=s, version="aivo-main-v2")
        assert got == v2
        assert got.created_at == clock.now() and got.created_at.tzinfo is not None
        assert got.training_metrics == {"auc": 0.75}
        assert [v.version for v in list_main_versions(session=s)] == ["aivo-main-v2", "aivo-main-v1"]
        assert list_main_versions(session=s, status="active") == []
        assert get_active_main_version(session=s) is None
        assert next_main_version_name(session=s) == "aivo-main-v3"


def test_register_rejects_bad_input(registry, clock):
    with registry.session() as s:
        add_version(s, registry.store, "v1", clock=clock)
    with pytest.raises(ConflictError), registry.session() as s:
        add_version(s, registry.store, "v1", clock=clock)
    with pytest.raises(DataError), registry.session() as s:
        add_version(s, registry.store, "bad name!", clock=clock)
    with pytest.raises(NotFoundError), registry.session() as s:
        add_version(s, registry.store, "v2", clock=clock, parent="nope")
    # A row may only point at an artifact that is already durable in the store.
    with pytest.raises(IntegrityError, match="store it before"), registry.session() as s:
        register_main_version(session=s, store=registry.store, version="v3",
                              artifact=ArtifactRef(sha256="a" * 64, size=10), architecture={}, clock=clock)
    ref = stored(registry.store, "x")
    with pytest.raises(IntegrityError), registry.session() as s:
        register_main_version(session=s, store=registry.store, version="v3",
                              artifact=ArtifactRef(sha256=ref.sha256, size=ref.size + 1), architecture={})
    with registry.session(read_only=True) as s:
        assert [v.version for v in list_main_versions(session=s)] == ["v1"]


def test_promote_and_rollback_are_audited(registry, clock):
    with registry.session() as s:
        for name in ("v1", "v2", "v3"):
            add_version(s, registry.store, name, clock=clock)
    with registry.session() as s:
        promote_main_version(session=s, version="v1", actor="alice", reason="first", clock=clock)
    clock.advance(hours=1)
    with registry.session() as s:
        active = promote_main_version(session=s, version="v2", actor="bob", reason="better AUC", clock=clock)
    assert active.status == "active" and active.activated_at == clock.now()
    clock.advance(hours=1)
    with registry.session() as s:
        promote_main_version(session=s, version="v3", actor="bob", reason="newer", clock=clock)
    with registry.session() as s:
        back = rollback_main_version(session=s, actor="carol", reason="v3 regressed", clock=clock)
    assert back.version == "v2"
    with registry.session(read_only=True) as s:
        statuses = {v.version: v.status for v in list_main_versions(session=s)}
        assert statuses == {"v1": "archived", "v2": "active", "v3": "archived"}
        audit = list_audit(session=s)
    assert [(a.action, a.actor, a.target, a.reason) for a in audit[:2]] == [
        ("main.rollback", "carol", "v2", "v3 regressed"), ("main.promote", "bob", "v3", "newer")]
    assert audit[0].details == {"previous_version": "v3", "new_version": "v2"}
    # Rolling back again goes to the version active before the current one (v3), by activation time.
    with registry.session() as s:
        assert rollback_main_version(session=s, actor="carol", reason="undo", to_version="v1").version == "v1"


def test_promotion_errors(registry, clock):
    with registry.session() as s:
        add_version(s, registry.store, "v1", clock=clock)
    with pytest.raises(ConflictError, match="nothing to roll back"), registry.session() as s:
        rollback_main_version(session=s, actor="a", reason="r")
    with pytest.raises(NotFoundError), registry.session() as s:
        promote_main_version(session=s, version="missing", actor="a", reason="r")
    with registry.session() as s:
        promote_main_version(session=s, version="v1", actor="a", reason="r")
    with pytest.raises(ConflictError, match="already active"), registry.session() as s:
        promote_main_version(session=s, version="v1", actor="a", reason="r")
    with pytest.raises(ConflictError, match="no version was active before"), registry.session() as s:
        rollback_main_version(session=s, actor="a", reason="r")
    with pytest.raises(ConflictError), registry.session() as s:
        archive_main_version(session=s, version="v1", actor="a", reason="r")
    with registry.session() as s:
        add_version(s, registry.store, "v2", clock=clock)
        assert archive_main_version(session=s, version="v2", actor="a", reason="gate").status == "archived"


def test_database_itself_refuses_two_active_versions(registry, clock):
    with registry.session() as s:
        add_version(s, registry.store, "v1", clock=clock)
        add_version(s, registry.store, "v2", clock=clock)
        promote_main_version(session=s, version="v1", actor="a", reason="r")
    with pytest.raises(DBIntegrityError), registry.session() as s:
        s.execute(sa.update(MainModelVersion).where(MainModelVersion.version == "v2").values(status="active"))
    with pytest.raises(DBIntegrityError), registry.session() as s:
        s.execute(sa.update(MainModelVersion).where(MainModelVersion.version == "v2").values(status="bogus"))
    with registry.session(read_only=True) as s:
        assert get_active_main_version(session=s).version == "v1"


def test_failed_promotion_rolls_back_whole(registry, clock):
    with registry.session() as s:
        add_version(s, registry.store, "v1", clock=clock)
        add_version(s, registry.store, "v2", clock=clock)
        promote_main_version(session=s, version="v1", actor="a", reason="r")
    with pytest.raises(RuntimeError), registry.session() as s:
        promote_main_version(session=s, version="v2", actor="a", reason="r")
        raise RuntimeError("crash before commit")
    with registry.session(read_only=True) as s:
        assert get_active_main_version(session=s).version == "v1"
        assert [a.action for a in list_audit(session=s)] == ["main.promote"]
