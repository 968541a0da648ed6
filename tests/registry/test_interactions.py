"""Interactions: pseudonymized, idempotent bulk import; loading back as an InteractionLog."""

from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd
import pytest
import sqlalchemy as sa

from aivo.data.privacy import pseudonymize_learner_id
from aivo.data.schema import make_log
from aivo.errors import ConflictError, DataError
from aivo.registry import count_interactions, import_interactions, list_learners, load_interactions
from aivo.registry.tables import Interaction, Learner

KEY = b"k" * 32


def _frame(learners=("alice", "bob", "chen"), per_learner=5, start_order=0) -> pd.DataFrame:
    rows = []
    for li, learner in enumerate(learners):
        for k in range(start_order, start_order + per_learner):
            rows.append({
                "learner_id": learner, "item_id": f"q{(li + k) % 4}", "skill_ids": f"s{k % 2};s9",
                "correct": (li + k) % 2, "order": k,
                "timestamp": pd.Timestamp("2026-01-01", tz="UTC") + pd.Timedelta(days=k, hours=li),
                "response_time_s": 1.5 * k if k != 2 else None, "subject": "math", "grade": li + 3,
                "item_type": "multiple_choice", "accommodation": "tts" if li == 0 else None,
            })
    return pd.DataFrame(rows)


def test_import_is_pseudonymized_and_idempotent(registry):
    log = make_log(_frame(), source="unit")
    with registry.session() as s:
        first = import_interactions(session=s, log=log, secret_key=KEY, tenant="school-a")
    assert (first.rows_read, first.rows_inserted, first.rows_skipped) == (15, 15, 0)
    assert (first.learners, first.learners_created, first.tenant) == (3, 3, "school-a")
    with registry.session() as s:
        again = import_interactions(session=s, log=log, secret_key=KEY, tenant="school-a")
    assert (again.rows_inserted, again.rows_skipped, again.learners_created) == (0, 15, 0)
    with registry.session() as s:  # overlapping batch: only the new positions go in
        more = import_interactions(session=s, log=make_log(_frame(per_learner=4, start_order=3)), secret_key=KEY,
                                   tenant="school-a")
    assert (more.rows_inserted, more.rows_skipped) == (6, 6)
    with registry.session(read_only=True) as s:
        stored_ids = set(s.scalars(sa.select(Learner.pseudonym)))
        assert stored_ids == {pseudonymize_learner_id(r, key=KEY) for r in ("alice", "bob", "chen")}
        assert "alice" not in str(s.execute(sa.select(Interaction.__table__)).all())  # no raw id anywhere
        assert count_interactions(session=s) == 21
        assert count_interactions(session=s, tenant="school-a") == 21
        assert {x.tenant for x in list_learners(session=s)} == {"school-a"}


def test_load_round_trip_and_filters(registry):
    original = make_log(_frame(), source="unit")
    with registry.session() as s:
        import_interactions(session=s, log=original, secret_key=KEY)
    with registry.session(read_only=True) as s:
        loaded = load_interactions(session=s)
        alice = pseudonymize_learner_id("alice", key=KEY)
        only_alice = load_interactions(session=s, learner_ids=[alice])
        window = load_interactions(session=s, since=datetime(2026, 1, 2, tzinfo=timezone.utc),
                                   until=datetime(2026, 1, 4, tzinfo=timezone.utc))
        with pytest.raises(DataError, match="no interactions"):
            load_interactions(session=s, tenant="elsewhere")
    expected = original.frame.copy()
    expected["learner_id"] = expected["learner_id"].map(lambda r: pseudonymize_learner_id(r, key=KEY))
    expected = expected.sort_values(["learner_id", "order"]).reset_index(drop=True)
    got = loaded.frame
    assert list(got.columns) == list(expected.columns)
    for col in expected.columns:
        assert got[col].astype("object").where(got[col].notna(), None).tolist() == \
            expected[col].astype("object").where(expected[col].notna(), None).tolist(), col
    assert loaded.data_hash() == make_log(expected).data_hash()
    assert set(only_alice.frame["learner_id"]) == {alice} and len(only_alice.frame) == 5
    assert window.num_interactions == 6 and window.frame["timestamp"].min() >= pd.Timestamp("2026-01-02", tz="UTC")


def test_learner_in_another_tenant_is_refused_whole(registry):
    with registry.session() as s:
        import_interactions(session=s, log=make_log(_frame(learners=("alice",))), secret_key=KEY, tenant="a")
    with pytest.raises(ConflictError, match="another tenant"), registry.session() as s:
        import_interactions(session=s, log=make_log(_frame(learners=("zoe", "alice"))), secret_key=KEY,
                            tenant="b")
    with registry.session(read_only=True) as s:  # nothing of the refused batch was written
        assert count_interactions(session=s) == 5 and len(list_learners(session=s)) == 1


def test_log_without_optional_columns(registry):
    frame = pd.DataFrame({"learner_id": ["1", "1", "2"], "item_id": ["a", "b", "a"], "correct": [1, 0, 1]})
    with registry.session() as s:
        import_interactions(session=s, log=make_log(frame), secret_key=KEY)
    with registry.session(read_only=True) as s:
        loaded = load_interactions(session=s)
    assert list(loaded.frame.columns) == ["learner_id", "item_id", "correct", "skill_ids", "order"]
    assert loaded.frame["skill_ids"].tolist() == loaded.frame["item_id"].tolist()
