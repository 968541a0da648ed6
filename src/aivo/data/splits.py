"""Splits by learner: a learner's whole history lands in exactly one part, never across parts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aivo.data.schema import InteractionLog
from aivo.errors import DataError


@dataclass(frozen=True)
class LearnerSplit:
    train: InteractionLog
    validation: InteractionLog
    test: InteractionLog

    def sizes(self) -> dict[str, dict[str, int]]:
        return {name: {"learners": part.num_learners, "interactions": part.num_interactions}
                for name, part in (("train", self.train), ("validation", self.validation), ("test", self.test))}


def split_learner_ids(learner_ids, *, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
                      seed: int = 0) -> tuple[list[str], list[str], list[str]]:
    """Shuffle unique learner ids with `seed` and cut them by `fractions` (train, val, test)."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise DataError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    ids = np.array(sorted(set(map(str, learner_ids))), dtype=object)
    if len(ids) < 3 and all(f > 0 for f in fractions):
        raise DataError(f"need at least 3 learners to split into train/validation/test, got {len(ids)}")
    rng = np.random.default_rng(seed)
    ids = ids[rng.permutation(len(ids))]
    n = len(ids)
    n_val = max(1, int(round(fractions[1] * n))) if fractions[1] > 0 else 0
    n_test = max(1, int(round(fractions[2] * n))) if fractions[2] > 0 else 0
    n_train = n - n_val - n_test
    if n_train <= 0:
        raise DataError(f"too few learners ({n}) for split {fractions}")
    return (ids[:n_train].tolist(), ids[n_train:n_train + n_val].tolist(), ids[n_train + n_val:].tolist())


def split_by_learner(log: InteractionLog, *, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
                     seed: int = 0) -> LearnerSplit:
    train_ids, val_ids, test_ids = split_learner_ids(log.frame["learner_id"].unique(), fractions=fractions,
                                                     seed=seed)
    return LearnerSplit(log.select_learners(train_ids), log.select_learners(val_ids),
                        log.select_learners(test_ids))
