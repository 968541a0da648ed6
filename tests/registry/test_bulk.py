"""Bulk insert helpers: stored values as Python values, None for anything missing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from aivo.registry.bulk import _SMALL, _plain


@pytest.mark.parametrize("series", [
    pd.Series([1, 2, 3]), pd.Series([1.5, np.nan, 2.0]), pd.Series([1, None], dtype="Int64"),
    pd.Series(["a", None], dtype="string"), pd.Series(["a", None, np.nan], dtype=object), pd.Series([True, False]),
    pd.Series([None, None], dtype=object), pd.Series([3, pd.NA], dtype="Int8")])
def test_small_batches_convert_values_as_large_ones(series):
    """An API batch takes a Python pass (below _SMALL rows), an import the pandas one: same values, same types."""
    large = pd.concat([series] * (_SMALL // len(series) + 1), ignore_index=True)
    assert len(series) <= _SMALL < len(large)
    small_out, large_out = _plain(series), _plain(large)[:len(series)]
    assert small_out == large_out and [type(v) for v in small_out] == [type(v) for v in large_out]
