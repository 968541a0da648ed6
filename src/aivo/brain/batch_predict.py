"""Next-step predictions for many learners at once, kept up to date one answer at a time.

`predict_next` (serving one learner) re-reads the learner's whole context on every call: the
encoder runs over the history and the history features are recomputed. A closed-loop evaluation
asks for thousands of learners' next items after every answer, so `BatchPredictor` keeps, per
learner, what those computations add up to and updates it with each new answer:

- the recurrent encoder's hidden state (one GRU/LSTM step per answer) and the evidence sums;
- the history features' running counts: per item, per (first) skill and per item type the
  attempts, right answers, residual sum, last outcome and position and the current streaks; per
  learner the running rates, the recency-weighted means and the online ability estimate.

`predict(candidates)` then scores every learner's candidate items from that state, the
correctness head split into its per-learner, per-item and per-(learner, item) parts.

The numbers equal `predict_next` on each learner's history (tests/brain/test_batch_predict.py;
float32 rounding aside) while the history fits one context (`len(history) < max_seq_len`); when a
learner's history reaches the context limit, the state is rebuilt from the context that
`aivo.brain.context` gives it, as serving reads it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from aivo.brain.bundle import TrainedBrain
from aivo.brain.context import context_start
from aivo.brain.features import (
    ABILITY_PRIOR_VARIANCE,
    KEY_RESIDUAL_PRIOR,
    NUM_FEATURES,
    PER_KEY,
    RECENT_OUTCOME_DECAY,
    RECENT_RESIDUAL_DECAY,
)
from aivo.brain.model import normalize_evidence
from aivo.brain.vocab import PAD
from aivo.errors import DataError


class EncodedCatalog:
    """A brain's encoding of a list of items: vocab index, skills (first first), type, expected
    rate. Row r of every array is item `item_ids[r]`."""

    def __init__(self, brain: TrainedBrain, items: pd.DataFrame):
        if "item_id" not in items.columns or items.empty:
            raise DataError("the catalog needs an 'item_id' column and at least one row")
        vocab, config = brain.vocab, brain.config
        self.item_ids = items["item_id"].astype(str).to_numpy()
        self.item = vocab.items.encode(self.item_ids)
        skill_text = (items["skill_ids"].astype(str) if "skill_ids" in items.columns
                      else items["item_id"].astype(str)).to_numpy()
        self.skills = vocab.encode_skills(skill_text, max_skills=config.max_skills_per_interaction)
        if "item_type" in items.columns:
            self.item_type = vocab.item_types.encode(
                items["item_type"].astype(object).fillna("<none>").astype(str).to_numpy())
        else:
            self.item_type = np.full(len(items), PAD, dtype=np.int64)
        self.expected = np.clip(brain.tables.expected_correct(self.item), 1e-3, 1 - 1e-3)
        self.logodds = np.log(self.expected / (1.0 - self.expected))

    def __len__(self) -> int:
        return len(self.item)


_SCALARS = ("cum_correct", "cum_residual", "previous", "ema_outcome", "ema_residual", "ability_mean",
            "ability_var")


def key_columns(raws: list[np.ndarray], position: np.ndarray) -> np.ndarray:
    """Per-key feature columns of possible next items: `raws` holds, per key kind (item, first
    skill, item type), the (7, L, C) counts of each item's key before the step (attempts, right,
    residual sum, last outcome (-1 never), last position, right run, wrong run); `position`
    (L, 1) the step -> (L, C, 24) float64."""
    parts = []
    for raw in raws:
        attempts, corrects, residual, last, last_pos, right, wrong = raw
        seen = last >= 0
        parts.append(np.stack([
            np.log1p(attempts), np.log1p(corrects), np.log1p(attempts - corrects),
            np.where(seen, 2.0 * last - 1.0, 0.0),
            np.where(seen, np.log1p(np.where(seen, position - last_pos, 0.0)), 0.0),
            np.log1p(right), np.log1p(wrong), residual / (attempts + KEY_RESIDUAL_PRIOR),
        ], axis=-1))
    return np.concatenate(parts, axis=-1)


def shared_columns(cum_correct, cum_residual, previous, ema_outcome, ema_residual, ability_mean, ability_var, *,
                   position: np.ndarray, prior: float, rate: float) -> np.ndarray:
    """(L,) running learner-level values before the step -> (L, 8) float64 learner columns."""
    return np.stack([
        (cum_correct + prior * rate) / (position + prior), np.log1p(position), previous,
        cum_residual / (position + prior), ema_outcome, ema_residual, ability_mean, np.sqrt(ability_var),
    ], axis=-1)


class _HeadParts(nn.Module):
    """The correctness head of a MainBrain rewritten as per-learner + per-item + per-pair terms
    (the same function as `MainBrain.correct_logit`): the state and the learner-level history
    features enter once per learner, the question and its expected rate once per item, and only
    the per-key history features and the evidence match once per (learner, item)."""

    def __init__(self, brain: TrainedBrain, catalog: EncodedCatalog):
        super().__init__()
        model, config = brain.model, brain.config
        self.model = model
        self.use_features = config.use_history_features
        with torch.no_grad():
            item = torch.from_numpy(catalog.item)
            skills = torch.from_numpy(catalog.skills)
            item_type = torch.from_numpy(catalog.item_type)
            mask = (skills != PAD).float()
            denom = mask.sum(-1).clamp_min(1.0)
            question = model.embed.question(item, skills, item_type)  # (J, D)
            first = model.head.correct[0]
            hs = config.hidden_dim + config.evidence_dim * len(config.evidence_decays)
            d, f = config.embed_dim, NUM_FEATURES
            w = first.weight  # (hh, inputs)
            self.w_state = w[:, :hs]
            w_features = w[:, hs + d:hs + d + f]
            keys = 3 * PER_KEY
            self.w_shared = w_features[:, keys:f - 1]  # learner-level columns
            item_pre = question @ w[:, hs:hs + d].T
            if self.use_features:  # the candidate's own expected rate (last column) is a property of the item
                logodds = torch.from_numpy(catalog.logodds.astype(np.float32))
                item_pre = item_pre + logodds[:, None] * w_features[:, f - 1]
            self.item_pre = item_pre  # (J, hh)
            self.w_pair = torch.cat([w_features[:, :keys], w[:, hs + d + f:]], dim=1).T.contiguous()  # (24 + E, hh)
            self.bias = first.bias
            self.evidence = bool(config.evidence_dim)
            if self.evidence:
                if model.head.evidence_query is not None:
                    query = model.head.evidence_query(question)
                else:
                    query = model.embed.evidence_factors(item, skills)
                    query = torch.cat([query] * model.head.num_decays, dim=-1)
                self.query = query  # (J, E)
            linear = model.head.item_bias(item).squeeze(-1)
            linear = linear + (model.head.skill_bias(skills).squeeze(-1) * mask).sum(-1) / denom
            self.item_linear = linear  # (J,)
            personal = model.personal
            self.scale = personal.log_scale.exp()
            offset = personal.bias + personal.item_type_offset[item_type]
            if personal.skill_offset is not None:
                offset = offset + (personal.skill_offset[skills] * mask).sum(-1) / denom
            self.item_offset = offset  # (J,) added after scaling
            self.readout = personal.state_readout
            self.hidden_dim = config.hidden_dim
            self.second = model.head.correct[3]

    @torch.no_grad()
    def logits(self, state: torch.Tensor, cand: torch.Tensor, key_features: torch.Tensor,
               shared: torch.Tensor) -> torch.Tensor:
        """state (N, Hs), cand (N, C) catalog rows, key_features (N, C, 24), shared (N, 8)
        learner-level features -> (N, C) logits."""
        learner = state @ self.w_state.T + self.bias
        if self.use_features:
            learner = learner + shared @ self.w_shared.T
        linear = self.item_linear[cand]
        if self.evidence:
            matched = self.query[cand] * state[:, None, self.hidden_dim:]
            pair = torch.cat([key_features, matched], dim=-1)
            linear = linear + matched.sum(-1)
        else:
            pair = key_features
        pre = pair @ self.w_pair
        pre += learner[:, None, :]
        pre += self.item_pre[cand]
        out = (F.gelu(pre) @ self.second.weight[0]) + self.second.bias[0] + linear
        readout = state[:, :self.readout.shape[0]] @ self.readout  # (N,)
        return out * self.scale + self.item_offset[cand] + readout[:, None]


class BatchPredictor:
    """N learners' next-step predictions under one Main Brain, updated answer by answer.

        predictor = BatchPredictor(brain, catalog_items, num_learners=1000)
        p = predictor.predict(candidate_rows)      # (N, C) P(correct), candidate_rows (N, C) or (C,)
        predictor.append(rows, correct)            # each learner answered catalog row rows[i]

    Rows index `catalog_items` (a frame with item_id, skill_ids, item_type)."""

    def __init__(self, brain: TrainedBrain, catalog_items: pd.DataFrame, *, num_learners: int,
                 chunk_size: int = 128):
        if num_learners < 1:
            raise ValueError(f"num_learners must be >= 1, got {num_learners}")
        self.brain, self.config = brain, brain.config
        self.model = brain.model
        self.model.eval()
        self.catalog = EncodedCatalog(brain, catalog_items)
        self.head = _HeadParts(brain, self.catalog)
        self.n = num_learners
        self.chunk_size = chunk_size
        self.rows_history: list[np.ndarray] = []  # per step (N,) catalog rows
        self.correct_history: list[np.ndarray] = []
        self._start = np.zeros(self.n, dtype=np.int64)  # context start of each learner (all equal here)
        self._reset(np.arange(self.n))

    # --- state ------------------------------------------------------------------------------
    def _reset(self, learners: np.ndarray) -> None:
        n = self.n
        if not hasattr(self, "length"):
            vocab = self.brain.vocab
            sizes = (len(vocab.items), len(vocab.skills), len(vocab.item_types))
            # per key kind: attempts, corrects, residual, last (-1 never), last position, right run, wrong run
            self.keys = [np.zeros((7, n, size), dtype=np.float64) for size in sizes]
            for table in self.keys:
                table[3] = -1.0
            self.length = np.zeros(n, dtype=np.int64)
            self.cum_correct = np.zeros(n)
            self.cum_residual = np.zeros(n)
            self.previous = np.zeros(n)
            self.ema_outcome = np.zeros(n)
            self.ema_residual = np.zeros(n)
            self.ability_mean = np.zeros(n)
            self.ability_var = np.full(n, ABILITY_PRIOR_VARIANCE)
            c = self.config
            layers = c.num_layers
            self.hidden = torch.zeros(layers, n, c.hidden_dim)
            self.cell = torch.zeros(layers, n, c.hidden_dim) if c.encoder == "lstm" else None
            self.recurrent = self.model.encoder.initial_state.detach().expand(n, -1).clone()
            self.evidence_sums = torch.zeros(n, c.evidence_dim * len(c.evidence_decays))
            return
        for table in self.keys:
            table[:, learners] = 0.0
            table[3, learners] = -1.0
        for name in ("cum_correct", "cum_residual", "previous", "ema_outcome", "ema_residual", "ability_mean"):
            getattr(self, name)[learners] = 0.0
        self.length[learners] = 0
        self.ability_var[learners] = ABILITY_PRIOR_VARIANCE
        idx = torch.from_numpy(learners)
        self.hidden[:, idx] = 0.0
        if self.cell is not None:
            self.cell[:, idx] = 0.0
        self.recurrent[idx] = self.model.encoder.initial_state.detach()
        self.evidence_sums[idx] = 0.0

    def _features(self, learners: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(L,) learners x (L, C) catalog rows -> the features of those items as the next step:
        (L, C, 24) per-key columns and (L, 8) learner-level columns (the last column, the
        item's expected rate, is `catalog.logodds`)."""
        cat = self.catalog
        position = self.length[learners].astype(np.float64)[:, None]
        first_skill = cat.skills[:, 0]
        raws = [table[:, learners[:, None], key]
                for table, key in zip(self.keys, (cat.item[rows], first_skill[rows], cat.item_type[rows]))]
        keys = key_columns(raws, position)
        shared = shared_columns(*(getattr(self, name)[learners] for name in _SCALARS), position=position[:, 0],
                                prior=self.config.running_rate_prior_count, rate=self.brain.tables.global_correct_rate)
        keys = keys.astype(np.float32)
        shared = shared.astype(np.float32)
        if not self.config.use_history_features:
            return np.zeros_like(keys), np.zeros_like(shared)
        return keys, shared

    def _state(self) -> torch.Tensor:
        """(N, H + E) the encoder state for each learner's next step."""
        c = self.config
        if not c.evidence_dim:
            return self.recurrent
        steps = torch.from_numpy(self.length.astype(np.float32))[:, None]
        sums = normalize_evidence(self.evidence_sums, steps, how=c.evidence_normalize,
                                  prior_count=c.running_rate_prior_count)
        return torch.cat([self.recurrent, sums], dim=-1)

    # --- public -----------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, candidates: np.ndarray) -> np.ndarray:
        """(N, C) or (C,) catalog rows -> (N, C) P(correct) of each as the learner's next item."""
        rows = np.asarray(candidates, dtype=np.int64)
        if rows.ndim == 1:
            rows = np.broadcast_to(rows, (self.n, len(rows)))
        if rows.shape[0] != self.n:
            raise ValueError(f"candidates for {rows.shape[0]} learners, the predictor has {self.n}")
        self._refresh_context()
        state = self._state()
        out = np.empty(rows.shape, dtype=np.float64)
        for start in range(0, self.n, self.chunk_size):
            learners = np.arange(start, min(start + self.chunk_size, self.n))
            sub = np.ascontiguousarray(rows[learners])
            keys, shared = self._features(learners, sub)
            logit = self.head.logits(state[learners], torch.from_numpy(sub), torch.from_numpy(keys),
                                     torch.from_numpy(shared))
            out[learners] = torch.sigmoid(logit).double().numpy()
        return out

    @torch.no_grad()
    def append(self, rows: np.ndarray, correct: np.ndarray) -> None:
        """Learner i answered catalog row rows[i] (correct[i] 0/1)."""
        rows = np.asarray(rows, dtype=np.int64)
        correct = np.asarray(correct, dtype=np.float64)
        if rows.shape != (self.n,) or correct.shape != (self.n,):
            raise ValueError(f"append takes one item and one answer per learner ({self.n})")
        self.rows_history.append(rows.copy())
        self.correct_history.append(correct.copy())
        if self._needs_rebuild():
            self._rebuild()
            return
        self._step(np.arange(self.n), rows, correct)

    def _needs_rebuild(self) -> bool:
        total = len(self.rows_history)
        return int(context_start(total, self.config.max_seq_len)) != int(self._start[0])

    def _refresh_context(self) -> None:
        if self._needs_rebuild():
            self._rebuild()

    def _rebuild(self) -> None:
        """Start over from the context that serving reads for the next step."""
        total = len(self.rows_history)
        start = int(context_start(total, self.config.max_seq_len))
        self._reset(np.arange(self.n))
        self._start[:] = start
        everyone = np.arange(self.n)
        for rows, correct in zip(self.rows_history[start:], self.correct_history[start:]):
            self._step(everyone, rows, correct)

    def _step(self, learners: np.ndarray, rows: np.ndarray, correct: np.ndarray) -> None:
        cat, model, c = self.catalog, self.model, self.config
        keys, shared = self._features(learners, rows[:, None])  # the row's own features
        feats = np.concatenate([keys[:, 0], shared, cat.logodds[rows, None].astype(np.float32)], axis=-1)
        if not c.use_history_features:
            feats = np.zeros_like(feats)
        item = torch.from_numpy(cat.item[rows])[:, None]
        skills = torch.from_numpy(cat.skills[rows])[:, None]
        item_type = torch.from_numpy(cat.item_type[rows])[:, None]
        answer = torch.from_numpy(correct.astype(np.float32))[:, None]
        features = torch.from_numpy(feats)[:, None]
        x = model.embed.interaction(item, skills, item_type, answer, features)  # (L, 1, D)
        if self.cell is not None:
            out, (h, cell) = model.encoder.rnn(x, (self.hidden, self.cell))
            self.cell = cell
        else:
            out, h = model.encoder.rnn(x, self.hidden)
        self.hidden = h
        self.recurrent = model.encoder.norm(out[:, 0])
        if c.evidence_dim:
            ev = model.embed.evidence(item, skills, answer, features)[:, 0]  # (L, R)
            r = c.evidence_dim
            parts = [self.evidence_sums[:, i * r:(i + 1) * r] * decay + ev
                     for i, decay in enumerate(c.evidence_decays)]
            self.evidence_sums = torch.cat(parts, dim=-1)
        # history-feature counts
        residual = correct - cat.expected[rows]
        position = self.length[learners].astype(np.float64)
        for table, key in zip(self.keys, (cat.item[rows], cat.skills[rows, 0], cat.item_type[rows])):
            table[0, learners, key] += 1.0
            table[1, learners, key] += correct
            table[2, learners, key] += residual
            table[3, learners, key] = correct
            table[4, learners, key] = position
            right, wrong = table[5, learners, key], table[6, learners, key]
            table[5, learners, key] = np.where(correct == 1.0, right + 1.0, 0.0)
            table[6, learners, key] = np.where(correct == 0.0, wrong + 1.0, 0.0)
        self.cum_correct[learners] += correct
        self.cum_residual[learners] += residual
        self.previous[learners] = 2.0 * correct - 1.0
        self.ema_outcome[learners] = (RECENT_OUTCOME_DECAY * self.ema_outcome[learners]
                                      + (1 - RECENT_OUTCOME_DECAY) * (2.0 * correct - 1.0))
        self.ema_residual[learners] = (RECENT_RESIDUAL_DECAY * self.ema_residual[learners]
                                       + (1 - RECENT_RESIDUAL_DECAY) * residual)
        m, v = self.ability_mean[learners], self.ability_var[learners]
        p = 1.0 / (1.0 + np.exp(-(m + cat.logodds[rows])))
        v = 1.0 / (1.0 / v + p * (1.0 - p))
        self.ability_mean[learners] = m + v * (correct - p)
        self.ability_var[learners] = v
        self.length[learners] += 1
