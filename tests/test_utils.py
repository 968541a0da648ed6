"""Shared helpers: read_ahead keeps order, bounds the work done ahead and re-raises in turn;
gc_paused nests and restores the collector's state."""

from __future__ import annotations

import gc
import threading

import pytest

from aivo.utils import gc_paused, read_ahead


def test_read_ahead_keeps_order_and_bounds_work_ahead():
    started: list[int] = []
    lock = threading.Lock()

    def work(i):
        with lock:
            started.append(i)
        return i * i

    seen = []
    for value in read_ahead(work, range(50), depth=4, workers=2):
        seen.append(value)
        with lock:  # never more than `depth` items submitted beyond what was consumed
            assert len(started) <= len(seen) + 4
    assert seen == [i * i for i in range(50)]


def test_read_ahead_reraises_in_turn():
    def work(i):
        if i == 3:
            raise ValueError("item 3")
        return i

    got = []
    with pytest.raises(ValueError, match="item 3"):
        for value in read_ahead(work, range(10), depth=2):
            got.append(value)
    assert got == [0, 1, 2]


def test_gc_paused_nests_and_restores():
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer pause still holds
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # was off before: stays off
    finally:
        gc.enable()
