import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from aivo.data.schema import make_log
from aivo.data.splits import split_by_learner, split_learner_ids
from aivo.errors import DataError


def log_of(num_learners, per=5):
    rows = [{"learner_id": f"L{i}", "item_id": str(j % 3), "correct": (i + j) % 2}
            for i in range(num_learners) for j in range(per)]
    return make_log(pd.DataFrame(rows))


def test_split_is_by_learner_and_complete():
    split = split_by_learner(log_of(50), seed=3)
    parts = [set(p.frame["learner_id"]) for p in (split.train, split.validation, split.test)]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert len(parts[0] | parts[1] | parts[2]) == 50
    assert split.sizes()["train"]["learners"] == 40
    # each learner keeps its whole history
    assert all(len(g) == 5 for _, g in split.test.frame.groupby("learner_id"))


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=3, max_value=300), st.integers(min_value=0, max_value=10**6))
def test_split_property_disjoint_and_deterministic(n, seed):
    ids = [f"x{i}" for i in range(n)]
    a = split_learner_ids(ids, seed=seed)
    assert a == split_learner_ids(list(reversed(ids)), seed=seed)  # input order does not matter
    assert sorted(a[0] + a[1] + a[2]) == sorted(ids)
    assert len(set(a[0]) | set(a[1]) | set(a[2])) == n


def test_bad_fractions_and_too_few_learners():
    with pytest.raises(DataError):
        split_learner_ids(["a", "b", "c"], fractions=(0.5, 0.5, 0.5))
    with pytest.raises(DataError):
        split_learner_ids(["a", "b"])
