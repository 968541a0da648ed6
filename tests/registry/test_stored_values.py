"""Issue 14: a bad value stored in the registry (by an older version, a manual edit, a restore)
never fails a whole read: `load_interactions` skips and counts the row, export and erasure
read it as NULL. Also the registry's own bounds at import, and private files."""

from __future__ import annotations

import logging
import stat

import pandas as pd
import pytest
import sqlalchemy as sa

from aivo.data.schema import make_log
from aivo.errors import DataError
from aivo.registry import delete_learner, export_learner, import_interactions, load_interactions

KEY = b"stored-values-tests-secret-key-0123456789"


def _frame(learners=("alice", "bob"), n: int = 4) -> pd.DataFrame:
    return pd.DataFrame([{"learner_id": who, "item_id": f"q{k}", "correct": k % 2, "order": k,
                          "timestamp": pd.Timestamp("2026-01-05", tz="UTC") + pd.Timedelta(hours=k),
                          "hint": k % 2 == 0}
                         for who in learners for k in range(n)])


def _raw(registry, sql: str) -> int:
    with registry.engine.begin() as conn:
        return conn.execute(sa.text(sql)).rowcount


def _damage(registry) -> dict[str, int]:
    """Bad values of every kind the dialect can hold, each in its own row of alice."""
    sqlite = registry.engine.dialect.name == "sqlite"
    damage = {
        "timestamp": ("timestamp = '0000-12-31 10:00:00.000000'" if sqlite
                      else "timestamp = '0001-01-01 00:00:00+14'::timestamptz", 0),
        "correct": ("correct = 7", 1),
    }
    if sqlite:
        damage["extra"] = ("extra = '{not json'", 2)
    else:
        damage["extra"] = ("extra = '[1, 2]'::jsonb", 2)  # JSON, but not an object
        damage["timestamp2"] = ("timestamp = 'infinity'::timestamptz", 3)
    for change, position in damage.values():
        assert _raw(registry, f"UPDATE interactions SET {change} WHERE position = {position} AND learner_id = "
                              "(SELECT min(id) FROM learners)") == 1
    counts: dict[str, int] = {}
    for reason in damage:
        counts[reason.rstrip("2")] = counts.get(reason.rstrip("2"), 0) + 1
    return counts


def test_load_skips_and_counts_rows_that_cannot_be_read_back(registry, caplog):
    with registry.session() as session:
        import_interactions(session=session, log=make_log(_frame()), secret_key=KEY)
    expected = _damage(registry)
    with caplog.at_level(logging.WARNING), registry.session(read_only=True) as session:
        log = load_interactions(session=session)
    assert log.num_interactions == 8 - sum(expected.values())
    note = next(n for n in log.notes if n.startswith("skipped"))
    for reason, n in expected.items():
        assert f"{reason}: {n}" in note, note
    assert "cannot be read back" in caplog.text
    assert log.frame["timestamp"].dt.year.eq(2026).all()
    assert set(log.frame["hint"].dropna()) <= {True, False}


def test_export_and_erasure_read_damaged_values_as_null(registry, clock):
    with registry.session() as session:
        import_interactions(session=session, log=make_log(_frame(learners=("carol",))), secret_key=KEY)
        pseudonym = session.scalar(sa.text("SELECT pseudonym FROM learners"))
    _damage(registry)
    with registry.session(read_only=True) as session:
        document = export_learner(session=session, store=registry.store, learner_id=pseudonym, clock=clock)
    rows = document["data"]["interactions"]
    assert len(rows) == 4 and sum(r["timestamp"] is None for r in rows) >= 1
    with registry.session() as session:
        result = delete_learner(session=session, store=registry.store, learner_id=pseudonym, actor="tests",
                                clock=clock)
    assert result.rows_deleted["interactions"] == 4


@pytest.mark.parametrize("column,value,message", [
    ("timestamp", pd.Timestamp("1800-06-01", tz="UTC"), "outside the supported years"),
    ("timestamp", pd.Timestamp("2150-06-01", tz="UTC"), "outside the supported years"),
    ("order", 2**60, "must be between 0 and"),
])
def test_import_refuses_values_outside_the_bounds(registry, column, value, message):
    frame = _frame(learners=("dave",), n=2)
    log = make_log(frame)
    log.frame.loc[1, column] = value  # a log built in memory, as the simulator does
    with pytest.raises(DataError, match=message), registry.session() as session:
        import_interactions(session=session, log=log, secret_key=KEY)
    with registry.session(read_only=True) as session:
        assert session.scalar(sa.text("SELECT count(*) FROM interactions")) == 0


def test_the_simulators_truth_is_not_stored_by_an_import(registry):
    frame = _frame(learners=("erin",), n=3).assign(p_true=0.5)
    with registry.session() as session:
        result = import_interactions(session=session, log=make_log(frame), secret_key=KEY)
        kept = import_interactions(session=session, log=make_log(frame.assign(learner_id="fay")), secret_key=KEY,
                                   keep_evaluation_truth=True)
    assert result.dropped_columns == ["p_true"] and kept.dropped_columns == []
    with registry.session(read_only=True) as session:
        log = load_interactions(session=session)
    truth = log.frame.groupby("learner_id")["p_true"].apply(lambda s: s.notna().sum())
    assert sorted(truth.tolist()) == [0, 3]


def test_the_embedded_database_home_and_artifacts_are_private(tmp_path):
    from aivo.config import Settings
    from aivo.registry import open_registry

    settings = Settings(home=tmp_path / "home")
    registry = open_registry(settings)
    digest = registry.store.put_bytes(b"personal parameters")
    with registry.session() as session:
        session.execute(sa.text("SELECT 1"))

    def mode(path):
        return stat.S_IMODE(path.stat().st_mode)

    home = settings.home
    assert mode(home) == 0o700
    for name in ("aivo.db", "aivo.db-wal", "aivo.db-shm"):
        assert mode(home / name) & 0o077 == 0, name
    artifacts = home / "artifacts"
    assert mode(artifacts) == 0o700
    files = [p for p in artifacts.rglob("*") if p.is_file()]
    assert files and all(mode(p) & 0o077 == 0 for p in files), digest
    assert all(mode(p) == 0o700 for p in artifacts.rglob("*") if p.is_dir())


def test_serving_reader_skips_the_rows_load_interactions_skips(registry):
    """`load_interactions_after` (the recommendations' incremental read) checks row by row what
    `load_interactions` checks: the same rows survive, with the same values."""
    from aivo.registry import load_interactions_after

    with registry.session() as session:
        import_interactions(session=session, log=make_log(_frame(n=6)), secret_key=KEY)
    expected = _damage(registry)
    with registry.session(read_only=True) as session:
        alice_pk, alice = session.execute(sa.text("SELECT id, pseudonym FROM learners ORDER BY id LIMIT 1")).one()
        rows, skipped = load_interactions_after(session=session, learner_pk=alice_pk, after=-1)
        later, _ = load_interactions_after(session=session, learner_pk=alice_pk, after=rows[0].order)
        frame = load_interactions(session=session).frame
    assert skipped == sum(expected.values()) and len(rows) == 6 - skipped
    assert later == rows[1:]
    kept = frame.loc[frame["learner_id"] == alice]
    assert [r.order for r in rows] == kept["order"].tolist()
    assert [r.item_id for r in rows] == kept["item_id"].tolist()
    assert [r.correct for r in rows] == kept["correct"].tolist()
    assert [r.timestamp_ns for r in rows] == [t.value for t in kept["timestamp"]]
