"""The aggregation round loop, written once for every strategy (with or without DP).

Each update is read once from the stream, checked (`check_update`), flattened, clipped to the
clip norm -- always, DP or not, so that one huge update moves the model by at most its
clipped share -- weighted and added to the strategy's round state. Memory is the round state
(O(d) for mean strategies, reservoir x d for robust ones) plus one update at a time.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aivo.federated.dp import PrivateStrategy, clip_to_norm
from aivo.federated.strategies import Reservoir, RoundState, Strategy
from aivo.federated.updates import LearnerUpdate, RejectedUpdate, UpdateSpec, check_update

log = logging.getLogger(__name__)


@dataclass
class AggregationOutcome:
    delta: np.ndarray | None  # (d,) server learning rate x aggregate; None when nothing was accepted
    accepted_learners: list[str] = field(default_factory=list)
    accepted_sessions: list[int] = field(default_factory=list)
    rejected: list[RejectedUpdate] = field(default_factory=list)
    num_clipped: int = 0
    norms: dict[str, float] = field(default_factory=dict)  # of the updates before clipping
    state_bytes: int = 0
    exact: bool = True  # False when a robust strategy combined a reservoir subsample

    @property
    def num_accepted(self) -> int:
        return len(self.accepted_learners)

    def summary(self) -> dict[str, Any]:
        return {"accepted": self.num_accepted, "rejected": len(self.rejected), "clipped": self.num_clipped,
                "update_norms": self.norms, "exact": self.exact,
                "update_norm": None if self.delta is None else float(np.linalg.norm(self.delta))}


def aggregate_updates(*, updates: Iterable[LearnerUpdate], spec: UpdateSpec, strategy: Strategy | PrivateStrategy,
                      clip_norm: float, server_learning_rate: float,
                      generator: np.random.Generator) -> AggregationOutcome:
    """Stream `updates` through `strategy`; returns the server step (or None) and what happened.

    With a `PrivateStrategy` its own clip norm is used and noise is added even when no update
    was accepted (the released value must not reveal that nobody took part)."""
    state, outcome = accumulate_updates(updates=updates, spec=spec, strategy=strategy, clip_norm=clip_norm,
                                        generator=generator)
    if outcome.accepted_learners or isinstance(strategy, PrivateStrategy):
        try:
            outcome.delta = server_learning_rate * state.result()
        except ValueError as exc:  # e.g. every weight was zero
            log.warning("no aggregate: %s", exc)
    return outcome


def accumulate_updates(*, updates: Iterable[LearnerUpdate], spec: UpdateSpec, strategy: Strategy | PrivateStrategy,
                       clip_norm: float, generator: np.random.Generator) -> tuple[RoundState, AggregationOutcome]:
    """The streaming half of `aggregate_updates`: check, clip, weigh and add every update to the
    strategy's round state, and return the state (not combined yet) with what happened. A site
    of a federation sends its state's partial sum; the coordinator merges the sites' sums."""
    if isinstance(strategy, PrivateStrategy):
        clip_norm = strategy.dp.clip_norm
    if not clip_norm > 0:
        raise ValueError(f"clip_norm must be > 0, got {clip_norm}")
    state = strategy.start(numel=spec.numel, generator=generator)
    outcome = AggregationOutcome(delta=None)
    norm_count, norm_sum, norm_max = 0, 0.0, 0.0
    for update in updates:
        reason = check_update(update, spec, values=False)
        weight, vector, norm = 0.0, None, 0.0
        if reason is None:
            vector = spec.flatten(update.tensors)
            vector, norm = clip_to_norm(vector, clip_norm, in_place=True)
            if not math.isfinite(norm):  # finite exactly when every value is (float32 squares fit in float64)
                reason = check_update(update, spec)  # the full check names the parameter
        if reason is None:
            try:
                weight = strategy.weight(update)
            except ValueError as exc:
                reason = str(exc)
        if reason is not None:
            outcome.rejected.append(RejectedUpdate(update.learner_id, update.session_id, reason))
            log.info("rejected the update of %s: %s", update.learner_id, reason)
            continue
        outcome.num_clipped += int(norm > clip_norm)
        norm_count, norm_sum, norm_max = norm_count + 1, norm_sum + norm, max(norm_max, norm)
        state.add(vector, weight)
        outcome.accepted_learners.append(update.learner_id)
        if update.session_id is not None:
            outcome.accepted_sessions.append(update.session_id)
    outcome.norms = {"mean": norm_sum / norm_count if norm_count else 0.0, "max": norm_max}
    outcome.state_bytes = state.nbytes
    if isinstance(state, Reservoir):
        outcome.exact = state.exact
    return state, outcome
