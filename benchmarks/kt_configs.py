"""Main Brain settings per benchmark data set, chosen on validation AUC only (never on test).

See the "Main Brain: knowledge tracing" section of benchmarks/RESULTS.md and docs/brain.md for
the bounded search that led to them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aivo.brain.config import BrainConfig


@dataclass(frozen=True)
class BenchmarkPlan:
    config: BrainConfig
    # Models trained with different seeds, each holding out a different fold of the training
    # learners for early stopping; their predictions are averaged. 1 = a single model.
    ensemble_size: int = 1
    validation_fraction: float = 0.2
    # Stop training new ensemble members once this much of the 10-minute budget is spent.
    time_budget_s: float = 540.0
    notes: str = ""
    extra: dict = field(default_factory=dict)


PLANS: dict[str, BenchmarkPlan] = {
    "statics": BenchmarkPlan(BrainConfig(evidence_dim=0, batch_size=16, max_epochs=40)),
    "assist2015": BenchmarkPlan(BrainConfig(evidence_dim=0, batch_size=64, max_epochs=30)),
    "synthetic5": BenchmarkPlan(BrainConfig(max_epochs=60)),
    "simulated": BenchmarkPlan(BrainConfig(max_epochs=30)),
}
