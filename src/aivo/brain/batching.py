"""InteractionLog -> chunks of at most `max_seq_len` attempts -> padded tensor batches.

Training cuts a learner's history into consecutive chunks of `max_seq_len` attempts, each treated
as an independent sequence (the KT benchmark protocol; `layout="chunks"`). Prediction and
evaluation read each attempt's context as serving does (`aivo.brain.context`; `layout="context"`):
overlapping windows, each scoring only the attempts whose context it is. Everything is computed
once per log as flat arrays (one entry per window position); a batch gathers its sequences into
(B, T) tensors with one index matrix. Batches group sequences of similar length (bucketing) so that
little time is spent on padding.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from aivo.brain.config import BrainConfig
from aivo.brain.context import context_windows
from aivo.brain.features import NUM_FEATURES, history_features
from aivo.brain.labels import LabelTables
from aivo.brain.vocab import PAD, BrainVocab
from aivo.data.schema import InteractionLog


@dataclass
class EncodedLog:
    """Flat arrays, one entry per position of a sequence (chunk or context window), plus the layout.
    With chunks the entries are the log's rows in order; with context windows a row may appear in
    several windows, `log_row` says which, and `scored_row` which entry scores it."""

    item: np.ndarray  # (N,) int64
    skills: np.ndarray  # (N, S) int64, PAD-filled
    item_type: np.ndarray  # (N,) int64
    correct: np.ndarray  # (N,) float32
    features: np.ndarray  # (N, F) float32
    difficulty: np.ndarray  # (N,) int64 level of the row's item
    position: np.ndarray  # (N,) int64 position within its chunk
    chunk_start: np.ndarray  # (C,) first entry of each sequence
    chunk_length: np.ndarray  # (C,)
    log_row: np.ndarray | None = None  # (N,) log row of each entry; None = entry i is log row i
    scored_row: np.ndarray | None = None  # (N,) bool; None = every position but a sequence's first

    def to_log_rows(self, values: np.ndarray, num_rows: int) -> np.ndarray:
        """(num_rows,) per log row from per-entry `values` that are NaN where an entry is not scored."""
        if self.log_row is None:
            return values
        out = np.full(num_rows, np.nan, dtype=values.dtype)
        keep = ~np.isnan(values)
        out[self.log_row[keep]] = values[keep]
        return out

    @property
    def num_chunks(self) -> int:
        return len(self.chunk_start)


@dataclass
class Batch:
    item: torch.Tensor  # (B, T) long
    skills: torch.Tensor  # (B, T, S) long
    item_type: torch.Tensor  # (B, T) long
    correct: torch.Tensor  # (B, T) float
    features: torch.Tensor  # (B, T, F) float
    difficulty: torch.Tensor  # (B, T) long
    valid: torch.Tensor  # (B, T) bool: a real interaction (not padding)
    scored: torch.Tensor  # (B, T) bool: valid and not the first of its chunk
    row: torch.Tensor  # (B, T) long: row in the log, -1 on padding

    def to(self, device: str | torch.device) -> "Batch":
        return Batch(**{k: v.to(device) for k, v in self.__dict__.items()})


def chunk_layout(learner_ids: np.ndarray, max_seq_len: int, *, shifts: np.ndarray | None = None,
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows sorted by learner -> (position within chunk (N,), chunk starts (C,), chunk lengths (C,)).

    A learner's history is cut every `max_seq_len` rows from its start; with `shifts` (one per
    learner, in order of appearance) the first chunk of learner i is `shifts[i]` rows shorter, so
    that training sees other cut points (the evaluation protocol always uses shift 0)."""
    n = len(learner_ids)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    new_learner = np.ones(n, dtype=bool)
    new_learner[1:] = learner_ids[1:] != learner_ids[:-1]
    learner_start = np.flatnonzero(new_learner)
    learner_length = np.diff(np.append(learner_start, n))
    run = np.arange(n) - np.repeat(learner_start, learner_length)
    if shifts is not None:
        run = run + np.repeat(np.asarray(shifts, dtype=np.int64) % max_seq_len, learner_length)
    block = run // max_seq_len
    new_chunk = new_learner.copy()
    new_chunk[1:] |= block[1:] != block[:-1]
    starts = np.flatnonzero(new_chunk)
    lengths = np.diff(np.append(starts, n))
    position = np.arange(n) - np.repeat(starts, lengths)
    return position.astype(np.int64), starts.astype(np.int64), lengths.astype(np.int64)


def random_shifts(learner_ids: np.ndarray, max_seq_len: int, generator: np.random.Generator) -> np.ndarray:
    """One random cut offset per learner whose history is longer than a chunk (0 for the others)."""
    _, counts = np.unique(learner_ids, return_counts=True)
    order = pd.unique(learner_ids)
    lengths = pd.Series(counts, index=np.unique(learner_ids)).reindex(order).to_numpy()
    shifts = generator.integers(0, max_seq_len, len(lengths))
    return np.where(lengths > max_seq_len, shifts, 0)


def encode_log(log: InteractionLog, *, vocab: BrainVocab, tables: LabelTables, config: BrainConfig,
               shifts: np.ndarray | None = None, layout: str = "chunks") -> EncodedLog:
    """`layout="chunks"`: the protocol's chunks (training; `shifts` moves the cuts per learner).
    `layout="context"`: the windows that score every attempt from the context serving reads."""
    frame = log.frame
    learner_ids = frame["learner_id"].to_numpy(dtype=object)
    log_row = scored_row = None
    if layout == "chunks":
        position, starts, lengths = chunk_layout(learner_ids, config.max_seq_len, shifts=shifts)
    elif layout == "context" and shifts is None:
        windows = context_windows(learner_ids, config.max_seq_len)
        position, starts, lengths = windows.position, windows.starts, windows.lengths
        log_row, scored_row = windows.rows, windows.scored
        if len(log_row) != len(frame):  # some history is longer than a window: rows repeat
            frame = frame.iloc[log_row]
    else:
        raise ValueError(f"layout must be 'chunks' (optionally with shifts) or 'context', got {layout!r}")
    item = vocab.items.encode(frame["item_id"].to_numpy())
    skills = vocab.encode_skills(frame["skill_ids"].to_numpy(), max_skills=config.max_skills_per_interaction)
    if "item_type" in frame.columns:
        item_type = vocab.item_types.encode(frame["item_type"].fillna("<none>").to_numpy())
    else:
        item_type = np.full(len(frame), PAD, dtype=np.int64)
    correct = frame["correct"].to_numpy(dtype=np.float32)
    chunk = np.repeat(np.arange(len(starts)), lengths)
    if config.use_history_features:
        features = history_features(chunk=chunk, position=position, item=item, skill=skills[:, 0],
                                    item_type=item_type,
                                    correct=correct, expected=tables.expected_correct(item),
                                    global_correct_rate=tables.global_correct_rate,
                                    prior_count=config.running_rate_prior_count)
    else:
        features = np.zeros((len(frame), NUM_FEATURES), dtype=np.float32)
    difficulty = np.asarray(tables.item_level, dtype=np.int64)[item]
    return EncodedLog(item=item, skills=skills, item_type=item_type, correct=correct, features=features,
                      difficulty=difficulty, position=position, chunk_start=starts, chunk_length=lengths,
                      log_row=log_row, scored_row=scored_row)


def make_batch(encoded: EncodedLog, chunk_ids: np.ndarray) -> Batch:
    """Gather the given chunks into one padded batch."""
    starts = encoded.chunk_start[chunk_ids]
    lengths = encoded.chunk_length[chunk_ids]
    width = int(lengths.max())
    offsets = np.arange(width)
    valid = offsets[None, :] < lengths[:, None]  # (B, T)
    rows = np.where(valid, starts[:, None] + offsets[None, :], -1)
    safe = np.where(valid, rows, 0)

    def take(values: np.ndarray, fill) -> np.ndarray:
        out = values[safe]
        mask = valid if out.ndim == 2 else valid.reshape(valid.shape + (1,) * (out.ndim - 2))
        return np.where(mask, out, fill)

    if encoded.scored_row is None:
        scored = valid & (offsets[None, :] > 0)
    else:
        scored = valid & take(encoded.scored_row, False)
    return Batch(
        item=torch.from_numpy(take(encoded.item, PAD)),
        skills=torch.from_numpy(take(encoded.skills, PAD)),
        item_type=torch.from_numpy(take(encoded.item_type, PAD)),
        correct=torch.from_numpy(take(encoded.correct, 0.0).astype(np.float32)),
        features=torch.from_numpy(take(encoded.features, 0.0).astype(np.float32)),
        difficulty=torch.from_numpy(take(encoded.difficulty, 0)),
        valid=torch.from_numpy(valid),
        scored=torch.from_numpy(scored),
        row=torch.from_numpy(rows.astype(np.int64)),
    )


def bucketed_batches(lengths: np.ndarray, *, batch_size: int,
                     generator: np.random.Generator | None = None) -> list[np.ndarray]:
    """Chunk ids grouped into batches of similar length.

    Chunks are sorted by length (ties broken randomly when `generator` is given) and cut into
    batches of `batch_size` chunks; the batch order is shuffled when `generator` is given."""
    if generator is not None:
        order = np.lexsort((generator.random(len(lengths)), lengths))
    else:
        order = np.argsort(lengths, kind="stable")
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if generator is not None:
        batches = [batches[i] for i in generator.permutation(len(batches))]
    return batches


def iterate_batches(encoded: EncodedLog, *, batch_size: int,
                    generator: np.random.Generator | None = None) -> Iterator[Batch]:
    for chunk_ids in bucketed_batches(encoded.chunk_length, batch_size=batch_size, generator=generator):
        yield make_batch(encoded, chunk_ids)
