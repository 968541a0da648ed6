"""One learner's Main Brain state for serving, kept up to date answer by answer.

A recommendation needs the encoder state after the learner's history and the history features
of every candidate item. Computing them from the stored history on every request (`predict_next`)
re-reads and re-encodes the whole context; after an ingest of one answer only one step changed.
`LearnerModelState` holds what the context adds up to (the arithmetic of
`aivo.brain.batch_predict.BatchPredictor`, for one learner, with sparse per-key counts) and
`append` runs the new answers through one encoder step each.

A state built from a history and a state built from its first rows and then given the rest
by `append` are the same numbers, bit for bit: both run one step per answer, in order, with the
same shapes (tests/brain/test_learner_state.py). The numbers equal `predict_next` on the same
history up to float32 rounding (the whole sequence in one pass sums in another order). When the
history outgrows the context (`aivo.brain.context`), the state is rebuilt from the new context,
as `predict_next` reads it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from aivo.brain.batch_predict import EncodedCatalog, _HeadParts, key_columns, shared_columns
from aivo.brain.bundle import TrainedBrain
from aivo.brain.context import context_start
from aivo.brain.features import (
    ABILITY_PRIOR_VARIANCE,
    KEY_RESIDUAL_PRIOR,
    RECENT_OUTCOME_DECAY,
    RECENT_RESIDUAL_DECAY,
)
from aivo.brain.model import normalize_evidence
from aivo.brain.vocab import PAD
from aivo.data.schema import split_skills

_NEVER = np.array([0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0])  # attempts, right, residual, last, last pos, runs


@dataclass(frozen=True)
class EncodedRows:
    """Rows of a learner's history as a brain reads them: (T,) item, (T, S) skills, (T,) type
    indices and (T,) answers."""

    item: np.ndarray
    skills: np.ndarray
    item_type: np.ndarray
    correct: np.ndarray

    @classmethod
    def encode(cls, brain: TrainedBrain, *, item_ids, skill_ids, item_types, correct) -> "EncodedRows":
        """`item_types` None: the history has no item types at all (PAD, as `encode_log` reads it);
        else missing values are '<none>'."""
        vocab, width = brain.vocab, brain.config.max_skills_per_interaction
        # One dict look-up per value (the few rows of an append): Vocabulary.index_of is encode's mapping.
        item = np.array([vocab.items.index_of(str(v)) for v in item_ids], dtype=np.int64)
        skills = np.full((len(item), width), PAD, dtype=np.int64)
        for row, value in enumerate(skill_ids):
            parts = split_skills(value)[:width] or [str(value)]
            skills[row, :len(parts)] = [vocab.skills.index_of(str(p)) for p in parts]
        if item_types is None:
            kind = np.full(len(item), PAD, dtype=np.int64)
        else:
            kind = np.array([vocab.item_types.index_of("<none>" if v is None else str(v)) for v in item_types],
                            dtype=np.int64)
        return cls(item, skills, kind, np.asarray(correct, dtype=np.float64))

    def __len__(self) -> int:
        return len(self.item)

    def __getitem__(self, part: slice) -> "EncodedRows":
        return EncodedRows(self.item[part], self.skills[part], self.item_type[part], self.correct[part])

    def concat(self, other: "EncodedRows") -> "EncodedRows":
        return EncodedRows(np.concatenate([self.item, other.item]), np.concatenate([self.skills, other.skills]),
                           np.concatenate([self.item_type, other.item_type]),
                           np.concatenate([self.correct, other.correct]))


class _KeyTable:
    """Per-key counts of one learner (the rows of BatchPredictor's dense tables that are not
    zero): key -> [attempts, right, residual sum, last outcome, last position, right run, wrong run]."""

    def __init__(self) -> None:
        self.stats: dict[int, list[float]] = {}

    def gather(self, query: np.ndarray) -> np.ndarray:
        """(C,) keys -> (7, C) counts (never-seen keys: attempts 0, last -1)."""
        out = np.repeat(_NEVER[:, None], len(query), axis=1)
        if self.stats:
            keys = np.fromiter(self.stats, dtype=np.int64, count=len(self.stats))
            order = np.argsort(keys)
            keys = keys[order]
            values = np.array(list(self.stats.values()), dtype=np.float64).T[:, order]  # (7, m)
            at = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
            hit = keys[at] == query
            out[:, hit] = values[:, at[hit]]
        return out

    def row(self, key: int, position: float) -> list[float]:
        """The 8 per-key feature columns of one next item with this key (`key_columns`)."""
        s = self.stats.get(key)
        if s is None:
            return [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
        attempts, corrects, residual, last, last_pos, right, wrong = s
        return [math.log1p(attempts), math.log1p(corrects), math.log1p(attempts - corrects), 2.0 * last - 1.0,
                math.log1p(position - last_pos), math.log1p(right), math.log1p(wrong),
                residual / (attempts + KEY_RESIDUAL_PRIOR)]

    def update(self, key: int, correct: float, residual: float, position: float) -> None:
        s = self.stats.get(key)
        if s is None:
            s = self.stats[key] = [0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0]
        s[0] += 1.0  # the same float64 operations as BatchPredictor._step
        s[1] += correct
        s[2] += residual
        s[3] = correct
        s[4] = position
        s[5] = s[5] + 1.0 if correct == 1.0 else 0.0
        s[6] = s[6] + 1.0 if correct == 0.0 else 0.0


class ServingModel:
    """What serving one brain needs once: the catalog encoded and the correctness head split
    into per-learner, per-item and per-pair parts (`_HeadParts`). Rows index `items`."""

    def __init__(self, brain: TrainedBrain, items: pd.DataFrame):
        brain.model.eval()
        self.brain = brain
        self.catalog = EncodedCatalog(brain, items)
        self.head = _HeadParts(brain, self.catalog)
        every_item = np.arange(len(brain.tables.item_error_rate))
        self.expected = np.clip(brain.tables.expected_correct(every_item), 1e-3, 1 - 1e-3).tolist()  # per vocab item
        self.logodds = [math.log(e / (1.0 - e)) for e in self.expected]

    def new_state(self, rows: EncodedRows) -> "LearnerModelState":
        return LearnerModelState(self, rows)


class LearnerModelState:
    """One learner's state under a `ServingModel`; `append` adds answers, `predict` scores
    catalog rows as the next item."""

    def __init__(self, serving: ServingModel, rows: EncodedRows):
        self.serving = serving
        self.rows = rows  # the whole history (the context may start later)
        self._rebuild()

    # --- state --------------------------------------------------------------------------------
    def _reset(self) -> None:
        brain = self.serving.brain
        c, model = brain.config, brain.model
        self.tables = [_KeyTable(), _KeyTable(), _KeyTable()]  # item, first skill, item type
        self.length = 0
        self.cum_correct = self.cum_residual = self.previous = 0.0
        self.ema_outcome = self.ema_residual = self.ability_mean = 0.0
        self.ability_var = ABILITY_PRIOR_VARIANCE
        self.hidden = torch.zeros(c.num_layers, 1, c.hidden_dim)
        self.cell = torch.zeros(c.num_layers, 1, c.hidden_dim) if c.encoder == "lstm" else None
        self.recurrent = model.encoder.initial_state.detach().expand(1, -1).clone()
        self.evidence_sums = torch.zeros(1, c.evidence_dim * len(c.evidence_decays))

    def _rebuild(self) -> None:
        self.start = int(context_start(len(self.rows), self.serving.brain.config.max_seq_len))
        self._reset()
        context = self.rows[self.start:]
        for t in range(len(context)):
            self._step(context[t:t + 1])

    def append(self, rows: EncodedRows) -> None:
        """The learner answered `rows` (in order) after the history so far."""
        self.rows = self.rows.concat(rows)
        if int(context_start(len(self.rows), self.serving.brain.config.max_seq_len)) != self.start:
            self._rebuild()  # the context moved on: read it from its new start, as serving does
            return
        for t in range(len(rows)):
            self._step(rows[t:t + 1])

    def _scalars(self) -> tuple[np.ndarray, ...]:
        return tuple(np.array([v]) for v in (self.cum_correct, self.cum_residual, self.previous, self.ema_outcome,
                                             self.ema_residual, self.ability_mean, self.ability_var))

    def _features(self, item: np.ndarray, skill: np.ndarray, item_type: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(C,) keys of C possible next items -> (1, C, 24) per-key and (1, 8) learner columns."""
        brain = self.serving.brain
        raws = [table.gather(key)[:, None, :] for table, key in zip(self.tables, (item, skill, item_type))]
        position = np.array([[float(self.length)]])
        keys = key_columns(raws, position)
        shared = shared_columns(*self._scalars(), position=position[:, 0],
                                prior=brain.config.running_rate_prior_count, rate=brain.tables.global_correct_rate)
        keys, shared = keys.astype(np.float32), shared.astype(np.float32)
        if not brain.config.use_history_features:
            return np.zeros_like(keys), np.zeros_like(shared)
        return keys, shared

    def _row_features(self, item: int, skill: int, item_type: int) -> list[float]:
        """The features of one answered row, from the counts before it: per-key columns of its
        item, skill and type, the learner-level columns, its expected rate's log-odds."""
        brain = self.serving.brain
        position = float(self.length)
        prior, rate = brain.config.running_rate_prior_count, brain.tables.global_correct_rate
        out = [*self.tables[0].row(item, position), *self.tables[1].row(skill, position),
               *self.tables[2].row(item_type, position)]
        out += [(self.cum_correct + prior * rate) / (position + prior), math.log1p(position), self.previous,
                self.cum_residual / (position + prior), self.ema_outcome, self.ema_residual, self.ability_mean,
                math.sqrt(self.ability_var), self.serving.logodds[item]]
        return out

    @torch.no_grad()
    def _step(self, row: EncodedRows) -> None:
        """One answer (a one-row `EncodedRows`): BatchPredictor._step for one learner."""
        serving = self.serving
        model, c = serving.brain.model, serving.brain.config
        item, skill, item_type = int(row.item[0]), int(row.skills[0, 0]), int(row.item_type[0])
        correct = float(row.correct[0])
        features = torch.tensor([[self._row_features(item, skill, item_type)]], dtype=torch.float32)  # (1, 1, F)
        if not c.use_history_features:
            features = torch.zeros_like(features)
        item_t, skills_t = torch.from_numpy(row.item)[:, None], torch.from_numpy(row.skills)[:, None]
        answer = torch.tensor([[correct]], dtype=torch.float32)
        x = model.embed.interaction(item_t, skills_t, torch.from_numpy(row.item_type)[:, None], answer, features)
        if self.cell is not None:
            out, (self.hidden, self.cell) = model.encoder.rnn(x, (self.hidden, self.cell))
        else:
            out, self.hidden = model.encoder.rnn(x, self.hidden)
        self.recurrent = model.encoder.norm(out[:, 0])
        if c.evidence_dim:
            ev = model.embed.evidence(item_t, skills_t, answer, features)[:, 0]
            r = c.evidence_dim
            self.evidence_sums = torch.cat([self.evidence_sums[:, i * r:(i + 1) * r] * decay + ev
                                            for i, decay in enumerate(c.evidence_decays)], dim=-1)
        expected, logodds = serving.expected[item], serving.logodds[item]
        residual = correct - expected
        position = float(self.length)
        for table, key in zip(self.tables, (item, skill, item_type)):
            table.update(key, correct, residual, position)
        self.cum_correct += correct
        self.cum_residual += residual
        self.previous = 2.0 * correct - 1.0
        self.ema_outcome = RECENT_OUTCOME_DECAY * self.ema_outcome + (1 - RECENT_OUTCOME_DECAY) * (2.0 * correct - 1.0)
        self.ema_residual = RECENT_RESIDUAL_DECAY * self.ema_residual + (1 - RECENT_RESIDUAL_DECAY) * residual
        m, v = self.ability_mean, self.ability_var
        p = 1.0 / (1.0 + math.exp(-(m + logodds)))
        v = 1.0 / (1.0 / v + p * (1.0 - p))
        self.ability_mean = m + v * (correct - p)
        self.ability_var = v
        self.length += 1

    def _state(self) -> torch.Tensor:
        c = self.serving.brain.config
        if not c.evidence_dim:
            return self.recurrent
        steps = torch.tensor([[float(self.length)]], dtype=torch.float32)
        sums = normalize_evidence(self.evidence_sums, steps, how=c.evidence_normalize,
                                  prior_count=c.running_rate_prior_count)
        return torch.cat([self.recurrent, sums], dim=-1)

    # --- public -------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, rows: np.ndarray) -> np.ndarray:
        """(C,) catalog rows -> (C,) P(correct) of each as the learner's next item."""
        rows = np.asarray(rows, dtype=np.int64)
        cat = self.serving.catalog
        keys, shared = self._features(cat.item[rows], cat.skills[rows, 0], cat.item_type[rows])
        logit = self.serving.head.logits(self._state(), torch.from_numpy(rows)[None], torch.from_numpy(keys),
                                         torch.from_numpy(shared))
        return torch.sigmoid(logit[0]).double().numpy()
