"""A plain reference DKT (Piech et al. 2015) for the knowledge-tracing benchmark.

One LSTM layer (hidden 200) over embedded (item, answer) pairs, a per-item sigmoid output read at
the next item, Adam 1e-3, early stopping on validation AUC. It trains on the protocol's chunks of
200, as the Main Brain does, and is scored as `aivo evaluate` scores the Main Brain: every attempt
but a learner's first, from the context `aivo.brain.context` gives it (identical to the chunks up
to 200 attempts); `test_auc_chunks` is the KT papers' protocol (every chunk of 200 restarts from
an empty history and its first attempt is not scored).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.nn import functional as F

from aivo.brain.batching import bucketed_batches, chunk_layout
from aivo.brain.context import context_windows
from aivo.brain.vocab import Vocabulary
from aivo.data.schema import InteractionLog


@dataclass(frozen=True)
class DKTConfig:
    hidden_dim: int = 200
    embed_dim: int = 200
    learning_rate: float = 1e-3
    batch_size: int = 64
    max_epochs: int = 50
    patience: int = 5
    max_seq_len: int = 200
    dropout: float = 0.0


class DKT(nn.Module):
    def __init__(self, num_items: int, config: DKTConfig):
        super().__init__()
        self.interaction = nn.Embedding(2 * num_items, config.embed_dim)
        self.lstm = nn.LSTM(config.embed_dim, config.hidden_dim, batch_first=True)
        self.dropout = nn.Dropout(config.dropout)
        self.out = nn.Linear(config.hidden_dim, num_items)

    def forward(self, item: torch.Tensor, correct: torch.Tensor) -> torch.Tensor:
        """(B, T) -> (B, T - 1) logits of answering item t+1 correctly after steps <= t."""
        hidden, _ = self.lstm(self.interaction(2 * item + correct))
        logits = self.out(self.dropout(hidden[:, :-1]))  # (B, T-1, num_items)
        return logits.gather(-1, item[:, 1:].unsqueeze(-1)).squeeze(-1)


class _Chunks:
    """Sequences of a log: the protocol's chunks, or the context windows of `aivo.brain.context`."""

    def __init__(self, log: InteractionLog, vocab: Vocabulary, max_seq_len: int, layout: str = "chunks"):
        frame = log.frame
        learners = frame["learner_id"].to_numpy(dtype=object)
        item = vocab.encode(frame["item_id"].to_numpy())
        correct = frame["correct"].to_numpy(dtype=np.int64)
        if layout == "chunks":
            position, self.start, self.length = chunk_layout(learners, max_seq_len)
            self.scored = position > 0
        else:
            windows = context_windows(learners, max_seq_len)
            self.start, self.length, self.scored = windows.starts, windows.lengths, windows.scored
            item, correct = item[windows.rows], correct[windows.rows]
        self.item, self.correct = item, correct

    def batch(self, ids: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        starts, lengths = self.start[ids], self.length[ids]
        offsets = np.arange(int(lengths.max()))
        valid = offsets[None, :] < lengths[:, None]
        rows = np.where(valid, starts[:, None] + offsets[None, :], 0)
        item = np.where(valid, self.item[rows], 0)
        correct = np.where(valid, self.correct[rows], 0)
        scored = valid & self.scored[rows]
        return torch.from_numpy(item), torch.from_numpy(correct), torch.from_numpy(scored[:, 1:])


def _scores(model: DKT, chunks: _Chunks) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    ys, ps = [], []
    with torch.no_grad():
        for ids in bucketed_batches(chunks.length, batch_size=256):
            item, correct, mask = chunks.batch(ids)
            prob = torch.sigmoid(model(item, correct))
            ys.append(correct[:, 1:][mask].numpy())
            ps.append(prob[mask].numpy())
    model.train()
    return np.concatenate(ys), np.concatenate(ps)


def train_and_test_dkt(*, train: InteractionLog, validation: InteractionLog, test: InteractionLog,
                       config: DKTConfig, seed: int) -> dict:
    started = time.perf_counter()
    torch.manual_seed(seed)
    vocab = Vocabulary.build(train.frame["item_id"].unique())
    tr = _Chunks(train, vocab, config.max_seq_len)
    va, te = (_Chunks(x, vocab, config.max_seq_len, layout="context") for x in (validation, test))
    model = DKT(len(vocab), config)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    generator = np.random.default_rng(seed)
    best_auc, best_epoch, best_state, stale, epochs = -1.0, 0, None, 0, 0
    for epoch in range(1, config.max_epochs + 1):
        epochs = epoch
        for ids in bucketed_batches(tr.length, batch_size=config.batch_size, generator=generator):
            item, correct, mask = tr.batch(ids)
            if not mask.any():
                continue
            logits = model(item, correct)
            loss = F.binary_cross_entropy_with_logits(logits[mask], correct[:, 1:][mask].float())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        auc = roc_auc_score(*_scores(model, va))
        if auc > best_auc:
            best_auc, best_epoch, best_state, stale = auc, epoch, copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
            if stale >= config.patience:
                break
    model.load_state_dict(best_state)
    train_seconds = time.perf_counter() - started
    y, p = _scores(model, te)
    y_chunks, p_chunks = _scores(model, _Chunks(test, vocab, config.max_seq_len))
    return {"test_auc": float(roc_auc_score(y, p)), "test_auc_chunks": float(roc_auc_score(y_chunks, p_chunks)),
            "validation_auc": float(best_auc), "best_epoch": best_epoch, "epochs_run": epochs,
            "train_seconds": round(train_seconds, 1), "num_scored": int(len(y))}
