"""Inference with a trained Main Brain: per-row predictions, evaluation, next-step predictions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from aivo.brain.batching import encode_log
from aivo.brain.bundle import TrainedBrain
from aivo.brain.context import context_start
from aivo.brain.features import NUM_FEATURES, candidate_features, history_features
from aivo.data.metrics import BinaryMetrics, binary_metrics, subgroup_metrics
from aivo.brain.train import scored_probabilities
from aivo.brain.vocab import PAD
from aivo.data.schema import InteractionLog
from aivo.errors import DataError


def predict(*, brain: TrainedBrain, log: InteractionLog, batch_size: int = 256) -> np.ndarray:
    """(N,) P(correct) for each row of `log.frame`, from the learner's earlier rows that serving
    would read (`aivo.brain.context`: all of them up to `max_seq_len - 1`, then a window of
    between `max_seq_len / 2` and `max_seq_len - 1`): the number `predict_next` gives after the
    rows before it. NaN on each learner's first attempt (nothing to predict from)."""
    if log.num_interactions == 0:
        return np.zeros(0, dtype=np.float64)
    encoded = encode_log(log, vocab=brain.vocab, tables=brain.tables, config=brain.config, layout="context")
    prob = scored_probabilities(brain.model, encoded, batch_size=batch_size)
    return encoded.to_log_rows(prob, log.num_interactions)


@dataclass
class Evaluation:
    metrics: BinaryMetrics  # over all scored rows
    # column -> value -> metrics (groups smaller than `min_group_size` predictions are left out)
    subgroups: dict[str, dict[str, BinaryMetrics]] = field(default_factory=dict)
    # Same metrics for the true probabilities (`p_true` column, simulated data only) on the scored
    # rows that have one (a log may mix simulated and real rows; `oracle.n` says how many).
    oracle: BinaryMetrics | None = None
    num_rows: int = 0
    num_scored: int = 0

    def as_dict(self) -> dict:
        return {
            "metrics": self.metrics.as_dict(),
            "subgroups": {col: {value: m.as_dict() for value, m in groups.items()}
                          for col, groups in self.subgroups.items()},
            "oracle": self.oracle.as_dict() if self.oracle is not None else None,
            "num_rows": self.num_rows,
            "num_scored": self.num_scored,
        }


def evaluate(*, brain: TrainedBrain, log: InteractionLog, group_by: Sequence[str] = (),
             min_group_size: int = 20, batch_size: int = 256) -> Evaluation:
    """Score every attempt but each learner's first, from the context serving reads (`predict`);
    metrics overall, per subgroup, and of the oracle when the log carries `p_true`."""
    frame = log.frame
    missing = [col for col in group_by if col not in frame.columns]
    if missing:
        raise DataError(f"cannot group by missing column(s) {', '.join(missing)}; "
                        f"columns: {', '.join(map(str, frame.columns))}", path=log.source)
    prob = predict(brain=brain, log=log, batch_size=batch_size)
    scored = ~np.isnan(prob)
    if not scored.any():
        raise DataError("nothing to evaluate: no learner has two or more attempts", path=log.source)
    y = frame["correct"].to_numpy()[scored]
    p = prob[scored]
    subgroups = {col: subgroup_metrics(y, p, frame[col].astype(str).to_numpy()[scored], min_size=min_group_size)
                 for col in group_by}
    return Evaluation(metrics=binary_metrics(y, p), subgroups=subgroups, oracle=_oracle(frame, scored, y),
                      num_rows=len(frame), num_scored=int(scored.sum()))


def _oracle(frame: pd.DataFrame, scored: np.ndarray, y: np.ndarray) -> BinaryMetrics | None:
    """Metrics of the simulator's true probabilities over the scored rows that carry one: real
    rows mixed into a simulated log have none (NaN), and an ingest never sets it."""
    if "p_true" not in frame.columns:
        return None
    truth = pd.to_numeric(frame["p_true"], errors="coerce").to_numpy(dtype=np.float64)[scored]
    known = np.isfinite(truth) & (truth >= 0.0) & (truth <= 1.0)
    if not known.any():
        return None
    return binary_metrics(y[known], truth[known])


@dataclass
class NextStep:
    """What the model expects of one learner's next interaction."""

    item_ids: list[str]  # the candidates, in the order given
    p_correct: np.ndarray  # (K,) P(correct) if the candidate were asked next
    difficulty_probs: np.ndarray  # (L,) distribution of the next item's difficulty level
    skill_ids: list[str]  # (V,) skill ids in `next_skill_probs` order
    next_skill_probs: np.ndarray  # (V,) distribution of the next item's (first) skill


@torch.no_grad()
def predict_next(*, brain: TrainedBrain, history: InteractionLog, candidates: pd.DataFrame) -> NextStep:
    """P(correct) of each candidate item as the learner's next attempt, after `history` (one
    learner, any length: the attempts from `context_start(len(history))` on are read, the context
    that `predict`/`evaluate` score the same attempt from; see `aivo.brain.context`).

    `candidates` has an `item_id` column and optionally `skill_ids` and `item_type` (defaults:
    the item id as its skill, no type). An empty history is a new learner."""
    if "item_id" not in candidates.columns or candidates.empty:
        raise DataError("candidates need an 'item_id' column and at least one row")
    frame = history.frame
    if frame["learner_id"].nunique() > 1:
        raise DataError(f"predict_next takes one learner's history, got {frame['learner_id'].nunique()} learners")
    config, vocab, model = brain.config, brain.vocab, brain.model
    frame = frame.iloc[context_start(len(frame), config.max_seq_len):]
    max_skills = config.max_skills_per_interaction
    cand_item = vocab.items.encode(candidates["item_id"].astype(str).to_numpy())
    cand_skill_text = (candidates["skill_ids"].astype(str) if "skill_ids" in candidates.columns
                       else candidates["item_id"].astype(str)).to_numpy()
    cand_skills = vocab.encode_skills(cand_skill_text, max_skills=max_skills)
    cand_type = _encode_types(brain, candidates)

    hist_item = vocab.items.encode(frame["item_id"].to_numpy())
    hist_skills = vocab.encode_skills(frame["skill_ids"].to_numpy(), max_skills=max_skills)
    hist_correct = frame["correct"].to_numpy(dtype=np.float32)
    hist_type = _encode_types(brain, frame)
    if config.use_history_features:
        cand_features = candidate_features(history_item=hist_item, history_skill=hist_skills[:, 0],
                                           history_type=hist_type, candidate_type=cand_type,
                                           history_correct=hist_correct,
                                           history_expected=brain.tables.expected_correct(hist_item),
                                           candidate_item=cand_item, candidate_skill=cand_skills[:, 0],
                                           candidate_expected=brain.tables.expected_correct(cand_item),
                                           global_correct_rate=brain.tables.global_correct_rate,
                                           prior_count=config.running_rate_prior_count)
    else:
        cand_features = np.zeros((len(candidates), NUM_FEATURES), dtype=np.float32)
    state = _next_state(brain, frame, hist_item, hist_skills, hist_correct)  # (H + E,)
    model.eval()
    logit = model.correct_logit(state.expand(len(candidates), -1), torch.from_numpy(cand_item),
                                torch.from_numpy(cand_skills), torch.from_numpy(cand_type),
                                torch.from_numpy(cand_features))
    difficulty = torch.softmax(model.head.difficulty(state), -1)
    content = model.head.content(state) @ model.embed.skill.weight.T + model.head.content_bias
    content_probs = torch.softmax(content[2:], -1)  # PAD and UNK are not contents
    return NextStep(item_ids=candidates["item_id"].astype(str).tolist(),
                    p_correct=torch.sigmoid(logit).double().numpy(),
                    difficulty_probs=difficulty.double().numpy(), skill_ids=list(vocab.skills.tokens),
                    next_skill_probs=content_probs.double().numpy())


def _encode_types(brain: TrainedBrain, frame: pd.DataFrame) -> np.ndarray:
    """(N,) item-type indices of a frame, PAD when it has no item_type column (as in encode_log)."""
    if "item_type" not in frame.columns:
        return np.full(len(frame), PAD, dtype=np.int64)
    return brain.vocab.item_types.encode(frame["item_type"].astype(object).fillna("<none>").astype(str).to_numpy())


def _next_state(brain: TrainedBrain, frame: pd.DataFrame, item: np.ndarray, skills: np.ndarray,
                correct: np.ndarray) -> torch.Tensor:
    """The encoder state after the whole history, i.e. for the step after its last row: (H + E,)."""
    model, config = brain.model, brain.config
    length = len(frame)
    # Append a dummy step: its state is computed from the steps before it only (causality).
    item_seq = np.append(item, PAD)
    skills_seq = np.vstack([skills, np.zeros((1, skills.shape[1]), dtype=np.int64)])
    correct_seq = np.append(correct, 0.0).astype(np.float32)
    type_seq = np.append(_encode_types(brain, frame), PAD)
    if config.use_history_features:
        features = history_features(chunk=np.zeros(length + 1, dtype=np.int64), position=np.arange(length + 1),
                                    item=item_seq, skill=skills_seq[:, 0], item_type=type_seq, correct=correct_seq,
                                    expected=brain.tables.expected_correct(item_seq),
                                    global_correct_rate=brain.tables.global_correct_rate,
                                    prior_count=config.running_rate_prior_count)
    else:
        features = np.zeros((length + 1, NUM_FEATURES), dtype=np.float32)
    model.eval()
    out = model(item=torch.from_numpy(item_seq)[None], skills=torch.from_numpy(skills_seq)[None],
                item_type=torch.from_numpy(type_seq)[None], correct=torch.from_numpy(correct_seq)[None],
                features=torch.from_numpy(features)[None])
    return out.state[0, -1]
