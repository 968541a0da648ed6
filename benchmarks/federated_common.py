"""Helpers shared by the federated and personalization benchmarks (not a benchmark itself)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
KT = REPO.parent / "shared" / "data" / "kt"


def per_learner(encoded, learner_ids: np.ndarray) -> list:
    """An EncodedLog of many learners (rows grouped by learner) -> one LearnerChunks per learner."""
    from aivo.brain.batching import EncodedLog
    from aivo.personalization.batched import LearnerChunks

    starts = encoded.chunk_start
    owner = learner_ids[starts]
    bounds = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1], True])
    out = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        first, last = starts[a], starts[b - 1] + encoded.chunk_length[b - 1]
        rows = slice(first, last)
        out.append(LearnerChunks(str(owner[a]), EncodedLog(
            item=encoded.item[rows], skills=encoded.skills[rows], item_type=encoded.item_type[rows],
            correct=encoded.correct[rows], features=encoded.features[rows], difficulty=encoded.difficulty[rows],
            position=encoded.position[rows], chunk_start=starts[a:b] - first, chunk_length=encoded.chunk_length[a:b])))
    return out
