"""Which earlier attempts a prediction reads: one rule for serving and for evaluation.

The Main Brain predicts a learner's attempt t (0-based position in the learner's history) from
the attempts [context_start(t), t) before it:

* up to `max_seq_len - 1` earlier attempts, all of them (the first `max_seq_len` attempts of a
  history are one window, read from its start);
* beyond that, windows of `max_seq_len` attempts start every `stride` attempts (half a window by
  default), and attempt t reads the latest window that gives it at least `max_seq_len - stride`
  earlier attempts. The context thus holds between `max_seq_len - stride` and `max_seq_len - 1`
  attempts: never a cold restart (the KT benchmark protocol's fixed chunks restart from an empty
  history every `max_seq_len` attempts), and evaluation costs about `max_seq_len / stride` forward
  passes per row, not `max_seq_len` as an exact sliding window would.

`predict_next` (serving: recommendations, the API) reads `context_start(len(history))`;
`predict`/`evaluate` (and validation during training) score every attempt from the same context
through `context_windows`, so a test of a long history can check that both give one number.
Training keeps the protocol's chunks (with random cut offsets); only what is *read* for a
prediction is fixed here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def context_stride(max_seq_len: int) -> int:
    """The default distance between window starts: half a window."""
    return max(1, max_seq_len // 2)


def _checked_stride(max_seq_len: int, stride: int | None) -> int:
    if max_seq_len < 2:
        raise ValueError(f"max_seq_len must be at least 2, got {max_seq_len}")
    stride = context_stride(max_seq_len) if stride is None else int(stride)
    if not 1 <= stride <= max_seq_len - 1:
        raise ValueError(f"the context stride must be in [1, {max_seq_len - 1}], got {stride}")
    return stride


def context_start(position, max_seq_len: int, stride: int | None = None):
    """First attempt of the context that predicts attempt `position` (an int or an int array).

    0 while `position < max_seq_len`; then a multiple of `stride` with
    `max_seq_len - stride <= position - start <= max_seq_len - 1`."""
    stride = _checked_stride(max_seq_len, stride)
    start = np.maximum(0, (np.asarray(position, dtype=np.int64) - max_seq_len + stride) // stride * stride)
    return int(start) if np.ndim(start) == 0 else start


@dataclass(frozen=True)
class ContextWindows:
    """Overlapping windows of a log whose rows are grouped by learner: window w is the rows
    `rows[starts[w]:starts[w] + lengths[w]]` of the log, and it scores the attempts flagged in
    `scored` (aligned with `rows`). Every attempt but a learner's first is scored exactly once,
    from the context `context_start` gives it."""

    rows: np.ndarray  # (M,) log row of each window position
    starts: np.ndarray  # (W,) offset of each window in `rows`
    lengths: np.ndarray  # (W,)
    position: np.ndarray  # (M,) position within its window
    scored: np.ndarray  # (M,) bool


def context_windows(learner_ids: np.ndarray, max_seq_len: int, stride: int | None = None) -> ContextWindows:
    """The windows that score every attempt of a log (rows grouped by learner, in order) from the
    context `context_start` gives it."""
    stride = _checked_stride(max_seq_len, stride)
    n = len(learner_ids)
    if n == 0:
        empty = np.zeros(0, np.int64)
        return ContextWindows(empty, empty, empty, empty, np.zeros(0, bool))
    new_learner = np.ones(n, dtype=bool)
    new_learner[1:] = learner_ids[1:] != learner_ids[:-1]
    learner_start = np.flatnonzero(new_learner)
    learner_length = np.diff(np.append(learner_start, n))
    # window k >= 1 of a learner starts at k * stride and scores positions from
    # k * stride + max_seq_len - stride on: it exists while that is inside the history
    extra = np.where(learner_length > max_seq_len, -(-(learner_length - max_seq_len) // stride), 0)
    num_windows = 1 + extra  # (num_learners,)
    learner_of_window = np.repeat(np.arange(len(learner_start)), num_windows)
    first_window = np.cumsum(num_windows) - num_windows
    k = np.arange(len(learner_of_window)) - np.repeat(first_window, num_windows)  # window index within learner
    local_start = k * stride
    lengths = np.minimum(max_seq_len, learner_length[learner_of_window] - local_start)
    starts = np.cumsum(lengths) - lengths
    position = np.arange(int(lengths.sum())) - np.repeat(starts, lengths)
    rows = np.repeat(learner_start[learner_of_window] + local_start, lengths) + position
    first_scored = np.where(k == 0, 1, max_seq_len - stride)
    scored = position >= np.repeat(first_scored, lengths)
    return ContextWindows(rows=rows.astype(np.int64), starts=starts.astype(np.int64),
                          lengths=lengths.astype(np.int64), position=position.astype(np.int64), scored=scored)
