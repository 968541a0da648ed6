"""Garbage collection never deletes a referenced artifact; the consistency check finds damage."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from aivo.clock import FrozenClock
from aivo.registry import (
    collect_garbage,
    list_audit,
    record_training_session,
    referenced_digests,
    register_learner_model,
    verify_registry,
)
from aivo.registry.tables import MainModelVersion
from tests.registry.helpers import add_version, stored


def test_gc_keeps_every_referenced_artifact(registry, clock):
    store = registry.store
    with registry.session() as s:
        version = add_version(s, store, "v1", clock=clock)
        head = stored(store, "head")
        register_learner_model(session=s, store=store, learner_id="p1", source_version="v1", artifact=head,
                               clock=clock)
        trained = record_training_session(session=s, store=store, learner_id="p1", epochs=1, batch_size=1,
                                          samples=1, artifact=stored(store, "head-2"),
                                          update_artifact=stored(store, "delta"), clock=clock)
    # Training replaced the clone's first head: nothing references that one any more.
    orphans = {stored(store, f"orphan-{i}").sha256 for i in range(2)} | {head.sha256}
    referenced = {version.artifact_sha256, trained.artifact_sha256, trained.update_artifact_sha256}
    with registry.session(read_only=True) as s:
        assert referenced_digests(session=s) == referenced
    # Artifact ages come from the store's real modification times, so GC's clock is real time moved on.
    later = FrozenClock(datetime.now(timezone.utc) + timedelta(hours=2))

    with registry.session() as s:  # dry run by default: reports, deletes nothing
        dry = collect_garbage(session=s, store=store, clock=later)
    assert dry.dry_run and set(dry.unreferenced) == orphans and dry.deleted == []
    assert len(list(store.iter_artifacts())) == 6

    with registry.session() as s:  # too young: kept (a row may be about to reference it)
        young = collect_garbage(session=s, store=store, dry_run=False, min_age_s=10 * 3600, clock=later)
    assert young.deleted == [] and young.kept_recent == 3

    with registry.session() as s:
        result = collect_garbage(session=s, store=store, dry_run=False, min_age_s=60, clock=later)
    assert set(result.deleted) == orphans and result.bytes_reclaimable == 3 * 256
    remaining = {a.sha256 for a in store.iter_artifacts()}
    assert remaining == referenced
    with registry.session(read_only=True) as s:
        assert verify_registry(session=s, store=store, deep=True).ok
        assert list_audit(session=s, action="artifact.gc")[0].details == {"deleted": 3, "bytes": 768}


def test_gc_counts_references_in_tables_added_later(registry, clock):
    """A later revision's table with an *_artifact_sha256 column protects its artifacts too."""
    store = registry.store
    adapter = stored(store, "tutor-adapter")
    with registry.engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE tutor_adapters (id INTEGER PRIMARY KEY, adapter_artifact_sha256 "
                             "VARCHAR(64))"))
        conn.execute(sa.text("INSERT INTO tutor_adapters (id, adapter_artifact_sha256) VALUES (1, :d)"),
                     {"d": adapter.sha256})
    try:
        with registry.session() as s:
            result = collect_garbage(session=s, store=store, dry_run=False, min_age_s=0,
                                     clock=FrozenClock(datetime.now(timezone.utc) + timedelta(days=1)))
        assert result.deleted == [] and store.exists(adapter.sha256)
    finally:
        with registry.engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE tutor_adapters"))


def test_verify_reports_missing_and_corrupt(registry, clock):
    store = registry.store
    with registry.session() as s:
        v1 = add_version(s, store, "v1", clock=clock)
        v2 = add_version(s, store, "v2", clock=clock)
    store.delete(v1.artifact_sha256)
    path = store._backend.root / store.key(v2.artifact_sha256)
    os.chmod(path, 0o644)
    path.write_bytes(b"garbage")
    with registry.session(read_only=True) as s:
        shallow = verify_registry(session=s, store=store)
        deep = verify_registry(session=s, store=store, deep=True)
        assert s.scalar(sa.select(sa.func.count()).select_from(MainModelVersion)) == 2
    assert not shallow.ok and any("missing" in p for p in shallow.problems)
    assert any("bytes, expected" in p for p in shallow.problems)
    assert any("corrupted" in p for p in deep.problems)


def test_an_old_artifact_stored_again_is_not_collected(registry, clock, monkeypatch):
    """Content that already exists, stored again by a writer about to reference it, gets a fresh
    modification time: GC, which listed the store before the writer came, keeps it."""
    import aivo.registry.gc as gc

    store = registry.store
    ref = stored(store, "reused")
    path = store._backend._path(store.key(ref.sha256))  # an old copy, as if stored three hours ago
    three_hours_ago = (datetime.now(timezone.utc) - timedelta(hours=3)).timestamp()
    os.utime(path, (three_hours_ago, three_hours_ago))
    assert store.modified(ref.sha256) < datetime.now(timezone.utc) - timedelta(hours=2)
    original = gc.find_references

    def writer_comes_in_between(**kwargs):  # after GC's listing, before its deletes
        assert stored(store, "reused") == ref
        return original(**kwargs)

    monkeypatch.setattr(gc, "find_references", writer_comes_in_between)
    with registry.session() as s:
        result = collect_garbage(session=s, store=store, dry_run=False, min_age_s=3600)
    assert result.unreferenced == [ref.sha256]  # the listing saw an old, unreferenced artifact...
    assert result.deleted == [] and store.exists(ref.sha256)  # ...but it was stored again: kept
    assert store.modified(ref.sha256) > datetime.now(timezone.utc) - timedelta(minutes=1)
    monkeypatch.setattr(gc, "find_references", original)
    os.utime(path, (three_hours_ago, three_hours_ago))  # still unreferenced and old again: collected
    with registry.session() as s:
        assert collect_garbage(session=s, store=store, dry_run=False, min_age_s=3600).deleted == [ref.sha256]
