"""A learner split that stays put while the data grows: the continuous pipeline's 80/10/10.

`aivo.data.splits.split_by_learner` shuffles the learner list with a seed, so one new learner
reshuffles everyone: yesterday's training learners land in today's test split, and the active
version (trained yesterday) would be scored on learners it trained on. The pipeline compares a
candidate with the active version on the same test data, so it needs a split in which a learner
stays in the same part forever. Here each learner's part comes from a hash of (salt, pseudonym)
mapped to [0, 1): below `train` is training, then validation, then test. New learners fall into
parts in the same proportions; existing ones never move. Every version trained with the same
salt has therefore never seen the test learners, and a later evaluation of a job's candidate can
rebuild its held-out learners from the data alone (nothing per-learner is stored).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

from aivo.data.schema import InteractionLog
from aivo.data.splits import LearnerSplit
from aivo.errors import DataError


def learner_unit(learner_id: str, *, salt: str) -> float:
    """A learner's fixed position in [0, 1) (first 8 bytes of sha256(salt NUL id))."""
    digest = hashlib.sha256(f"{salt}\0{learner_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def stable_split_learner_ids(learner_ids: Iterable[str], *, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
                             salt: str = "aivo") -> tuple[list[str], list[str], list[str]]:
    """(train, validation, test) learner ids. Each part with a positive fraction gets at least one
    learner: when hashing leaves one empty, the learner whose position is nearest to it moves."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise DataError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    ids = sorted(set(map(str, learner_ids)))
    needed = sum(1 for f in fractions if f > 0)
    if len(ids) < needed:
        raise DataError(f"need at least {needed} learners to split into train/validation/test, got {len(ids)}")
    units = np.array([learner_unit(i, salt=salt) for i in ids])
    cuts = np.array([fractions[0], fractions[0] + fractions[1]])
    part = np.searchsorted(cuts, units, side="right")  # 0 train, 1 validation, 2 test
    for target in (2, 1, 0):  # fill empty parts from the learners nearest to their interval
        if fractions[target] <= 0 or (part == target).any():
            continue
        low = 0.0 if target == 0 else cuts[target - 1]
        high = 1.0 if target == 2 else cuts[target]
        counts = np.bincount(part, minlength=3)
        movable = np.flatnonzero(counts[part] > 1)  # never empty another part
        distance = np.maximum(low - units[movable], units[movable] - high)
        part[movable[np.argmin(distance)]] = target
    return tuple([ids[i] for i in np.flatnonzero(part == p)] for p in range(3))  # type: ignore[return-value]


def stable_split(log: InteractionLog, *, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
                 salt: str = "aivo") -> LearnerSplit:
    train, validation, test = stable_split_learner_ids(log.frame["learner_id"].unique(), fractions=fractions,
                                                       salt=salt)
    return LearnerSplit(log.select_learners(train), log.select_learners(validation), log.select_learners(test))
