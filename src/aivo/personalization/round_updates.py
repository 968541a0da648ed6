"""Many learners' updates for one federated round, with `train_local`'s semantics.

A site of a federation trains its sampled learners' shared updates from the round's main
version, each on that learner's own interactions before the held-out tail (exactly the update
`aivo train-local` computes, step 2 of `train_local`). Learners whose training chunks fit in one
local batch are trained side by side (`shared_updates`, one batched forward/backward per epoch
for a group); the others, and every learner when record-level DP-SGD is on, go one by one
through `shared_update_only`. The two give the same update for the same learner (tested).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from aivo.brain.batching import EncodedLog, encode_log
from aivo.brain.bundle import TrainedBrain
from aivo.data.schema import InteractionLog
from aivo.personalization.batched import LearnerChunks, shared_updates
from aivo.personalization.local import LocalTrainingConfig, encoded_prefix, holdout_size, shared_update_only
from aivo.personalization.parts import ParameterPartition


@dataclass(frozen=True)
class TrainedUpdate:
    learner_id: str
    tensors: dict[str, torch.Tensor]  # aggregated name -> change (float32)
    num_train: int  # interactions trained on


def split_encoded(encoded: EncodedLog, learner_ids: np.ndarray) -> list[LearnerChunks]:
    """An EncodedLog of many learners (rows grouped by learner, as `encode_log` keeps them) ->
    one LearnerChunks per learner, in row order."""
    starts = encoded.chunk_start
    if len(starts) == 0:
        return []
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


def round_updates(*, brain: TrainedBrain, log: InteractionLog, partition: ParameterPartition,
                  config: LocalTrainingConfig, group_size: int = 256) -> Iterator[TrainedUpdate]:
    """The shared update of every learner of `log` with at least `config.min_interactions`
    interactions (others are skipped: they cannot be trained and validated), one at a time."""
    if not partition.aggregated or config.epochs == 0 or log.num_interactions == 0:
        return
    frame = log.frame
    ids = frame["learner_id"].to_numpy(dtype=object)
    counts = frame.groupby("learner_id", sort=False).size()
    keep = set(counts.index[counts >= config.min_interactions])
    if config.dp is not None:  # DP-SGD needs per-window gradients: one learner at a time
        for learner_id in [lid for lid in dict.fromkeys(ids) if lid in keep]:
            yield _one(brain, log.select_learners([learner_id]), partition, config)
        return
    if brain.model.training:
        brain.model.eval()
    encoded = encode_log(log, vocab=brain.vocab, tables=brain.tables, config=brain.config)
    batchable: list[LearnerChunks] = []
    num_train: dict[str, int] = {}
    for chunks in split_encoded(encoded, ids):
        if chunks.learner_id not in keep:
            continue
        n = int(chunks.encoded.correct.shape[0])
        train_rows = n - holdout_size(n, config.holdout_fraction)
        prefix = LearnerChunks(chunks.learner_id, encoded_prefix(chunks.encoded, train_rows))
        num_train[chunks.learner_id] = train_rows
        if prefix.encoded.num_chunks <= config.batch_size:
            batchable.append(prefix)
        else:
            yield _one(brain, log.select_learners([chunks.learner_id]), partition, config)
    batchable.sort(key=lambda lc: int(lc.encoded.correct.shape[0]))  # similar lengths together: less padding
    for start in range(0, len(batchable), group_size):
        group: Sequence[LearnerChunks] = batchable[start:start + group_size]
        deltas = shared_updates(brain=brain, learners=group, partition=partition, epochs=config.epochs,
                                learning_rate=config.learning_rate, proximal_mu=config.proximal_mu,
                                batch_size=config.batch_size)
        for j, lc in enumerate(group):
            yield TrainedUpdate(lc.learner_id, {n: deltas[n][j].contiguous() for n in partition.aggregated},
                                num_train[lc.learner_id])


def _one(brain, history, partition, config) -> TrainedUpdate:
    update, num_train, _ = shared_update_only(brain=brain, history=history, partition=partition, config=config)
    return TrainedUpdate(str(history.frame["learner_id"].iloc[0]), update, num_train)
