"""The promotion gate: is a federated candidate not worse than the current main version?

Both models are scored on the same held-out interactions: by default the most recent
`holdout_fraction` of each of up to `max_learners` learners' histories (learners taken in
pseudonym order, which is a keyed hash, i.e. an arbitrary but fixed sample). Local training
never trains on those interactions (they are what the fallback rule validates on), so no
learner update has seen them. Each scored interaction is predicted from the learner's whole
earlier history, as in serving.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa

from aivo.brain.bundle import TrainedBrain
from aivo.data.metrics import binary_metrics
from aivo.brain.predict import predict
from aivo.data.schema import InteractionLog
from aivo.personalization.local import holdout_size
from aivo.registry import Registry, load_interactions
from aivo.registry.tables import Interaction, Learner


@dataclass(frozen=True)
class GateData:
    log: InteractionLog
    scored_rows: np.ndarray  # (N,) bool: rows in a learner's held-out tail

    @property
    def num_learners(self) -> int:
        return self.log.num_learners


def tail_rows(log: InteractionLog, holdout_fraction: float) -> np.ndarray:
    """(N,) bool: the last `holdout_size` rows of each learner (rows sorted by learner, order)."""
    learners = log.frame["learner_id"].to_numpy(dtype=object)
    if len(learners) == 0:
        return np.zeros(0, dtype=bool)
    new = np.r_[True, learners[1:] != learners[:-1]]
    starts = np.flatnonzero(new)
    lengths = np.diff(np.r_[starts, len(learners)])
    position = np.arange(len(learners)) - np.repeat(starts, lengths)
    hold = np.array([holdout_size(int(n), holdout_fraction) for n in lengths])
    return position >= np.repeat(lengths - hold, lengths)


def load_gate_data(*, registry: Registry, max_learners: int, holdout_fraction: float,
                   min_interactions: int = 5) -> GateData | None:
    """Held-out tails of up to `max_learners` learners with enough interactions (None if none)."""
    with registry.session(read_only=True) as session:
        counts = (sa.select(Interaction.learner_id, sa.func.count().label("n")).group_by(Interaction.learner_id)
                  .having(sa.func.count() >= min_interactions).subquery())
        pseudonyms = list(session.scalars(sa.select(Learner.pseudonym).join(counts, counts.c.learner_id == Learner.id)
                                          .order_by(Learner.pseudonym).limit(max_learners)))
        if not pseudonyms:
            return None
        log = load_interactions(session=session, learner_ids=pseudonyms, source="gate")
    return GateData(log=log, scored_rows=tail_rows(log, holdout_fraction))


def score(brain: TrainedBrain, data: GateData) -> dict:
    """BinaryMetrics (as a dict) of `brain` on the gate's held-out rows."""
    y, prob = held_out_predictions(brain, data)
    return binary_metrics(y, prob).as_dict()


def held_out_predictions(brain: TrainedBrain, data: GateData,
                         keep: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(labels, probabilities) of `brain` on the gate's held-out rows that it can score (and
    that `keep`, a (N,) bool, allows: two models are compared on the same rows)."""
    prob = predict(brain=brain, log=data.log)
    rows = data.scored_rows & ~np.isnan(prob)
    if keep is not None:
        rows &= keep
    return data.log.frame["correct"].to_numpy()[rows], prob[rows]


@dataclass(frozen=True)
class GateDecision:
    passes: bool
    improvement: float | None  # AUC after - AUC before
    reason: str


def decide(*, before: dict, after: dict, margin: float) -> GateDecision:
    """Promote when the candidate's AUC is at least the current one's minus `margin`."""
    auc_before, auc_after = before.get("auc"), after.get("auc")
    if auc_before is None or auc_after is None:
        return GateDecision(False, None, "AUC undefined on the held-out data (a single class)")
    improvement = auc_after - auc_before
    if improvement >= -margin:
        return GateDecision(True, improvement, f"held-out AUC {auc_after:.4f} vs {auc_before:.4f} "
                                               f"(change {improvement:+.4f}, margin {margin:g})")
    return GateDecision(False, improvement, f"held-out AUC {auc_after:.4f} is worse than {auc_before:.4f} "
                                            f"by more than the margin {margin:g}")
