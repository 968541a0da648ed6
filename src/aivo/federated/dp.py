"""User-level differential privacy for aggregation: pure math plus a wrapper around a strategy.

The mechanism (DP-FedAvg, McMahan et al. 2018, "fixed-denominator" estimator):

1. learners are Poisson-sampled: each eligible learner independently with probability q;
2. each learner's whole update is clipped to L2 norm C (`clip_to_norm`);
3. each clipped update is scaled by a weight w in [0, 1] (the strategy's weight divided by a
   fixed cap, clipped to 1; plain averaging uses w = 1), and the results are summed;
4. Gaussian noise N(0, (sigma C)^2) is added to every coordinate of the sum;
5. the noisy sum is divided by a *fixed* denominator: the expected number of participants
   q x (eligible learners) -- never by the number actually sampled or their weights, which
   depend on the data;
6. the server learning rate scales the result.

Adding or removing one learner changes the sum by at most w C <= C, so its L2 sensitivity is
C and each round is one sampled-Gaussian step (q, sigma) for the accountant. Robust strategies
(median, trimmed mean) combine order statistics whose L2 sensitivity is not bounded by C, so
they are refused under DP.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from aivo.errors import ConfigError
from aivo.federated.strategies import RoundState, RunningSum, Strategy
from aivo.federated.updates import LearnerUpdate


# --- pure functions ----------------------------------------------------------------------------
def clip_to_norm(vector: np.ndarray, clip_norm: float, *, in_place: bool = False) -> tuple[np.ndarray, float]:
    """(vector scaled to L2 norm <= clip_norm, its original norm); `in_place` scales the given
    array instead of a copy. A vector with NaN or Inf values comes back unchanged with a
    non-finite norm (callers reject it)."""
    norm = math.sqrt(float(np.einsum("i,i->", vector, vector)))  # no BLAS call: no thread spin-up per update
    if norm <= clip_norm or norm == 0.0 or not math.isfinite(norm):
        return vector, norm
    if in_place:
        vector *= clip_norm / norm
        return vector, norm
    return vector * (clip_norm / norm), norm


def gaussian_noise(*, numel: int, std: float, generator: np.random.Generator) -> np.ndarray:
    """(numel,) i.i.d. N(0, std^2) from an explicit generator."""
    if std < 0:
        raise ValueError(f"noise std must be >= 0, got {std}")
    return generator.normal(0.0, std, size=numel) if std > 0 else np.zeros(numel)


def poisson_sample(num_candidates: int, *, sample_rate: float, generator: np.random.Generator) -> np.ndarray:
    """(num_candidates,) bool: each candidate kept independently with probability sample_rate."""
    if not 0 < sample_rate <= 1:
        raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}")
    if sample_rate == 1:
        return np.ones(num_candidates, dtype=bool)
    return generator.random(num_candidates) < sample_rate


def capped_weight(weight: float, cap: float) -> float:
    """A strategy weight mapped into [0, 1] by a fixed cap (bounded sensitivity)."""
    return min(max(weight, 0.0) / cap, 1.0)


# --- the wrapper -------------------------------------------------------------------------------
@dataclass(frozen=True)
class UserLevelDP:
    """Parameters of the mechanism above; validates itself."""

    noise_multiplier: float
    clip_norm: float
    sample_rate: float
    weight_cap: float | None = None  # None: the strategy's default cap

    def __post_init__(self) -> None:
        if not (self.noise_multiplier >= 0 and math.isfinite(self.noise_multiplier)):
            raise ConfigError(f"noise multiplier must be a finite number >= 0, got {self.noise_multiplier}")
        if not (self.clip_norm > 0 and math.isfinite(self.clip_norm)):
            raise ConfigError(f"clip norm must be a finite number > 0, got {self.clip_norm}")
        if not 0 < self.sample_rate <= 1:
            raise ConfigError(f"sampling rate must be in (0, 1], got {self.sample_rate}")
        if self.weight_cap is not None and not self.weight_cap > 0:
            raise ConfigError(f"weight cap must be > 0, got {self.weight_cap}")

    def wrap(self, strategy: Strategy, *, num_eligible: int) -> "PrivateStrategy":
        return PrivateStrategy(strategy=strategy, dp=self, num_eligible=num_eligible)


class PrivateRound(RoundState):
    """Clipped, capped-weight sum; noise and the fixed denominator are applied in `result`."""

    def __init__(self, numel: int, *, noise_std: float, denominator: float, generator: np.random.Generator):
        self.sum = RunningSum(numel)
        self.noise_std = noise_std
        self.denominator = denominator
        self.generator = generator

    @property
    def count(self) -> int:  # type: ignore[override]
        return self.sum.count

    def add(self, vector: np.ndarray, weight: float) -> None:
        self.sum.add(vector, weight)

    def merge(self, *, total: np.ndarray, weight_total: float, count: int) -> None:
        """Add a partial sum of clipped, capped-weight updates (e.g. the secure sum across sites)."""
        self.sum.merge(total=total, weight_total=weight_total, count=count)

    def result(self) -> np.ndarray:
        noisy = self.sum.total + gaussian_noise(numel=len(self.sum.total), std=self.noise_std,
                                                generator=self.generator)
        return noisy / self.denominator

    @property
    def nbytes(self) -> int:
        return self.sum.nbytes


@dataclass
class PrivateStrategy:
    """A mean-type strategy under user-level DP (the wrapper checks what it wraps)."""

    strategy: Strategy
    dp: UserLevelDP
    num_eligible: int

    def __post_init__(self) -> None:
        if self.strategy.robust:
            raise ConfigError(
                f"the {self.strategy.name!r} strategy cannot run under user-level DP: a median or trimmed mean "
                "combines order statistics, and one learner can move them by more than the clip norm, so the "
                "Gaussian noise would not cover its influence. Use fedavg/fedprox/weighted with DP (clipping "
                "already bounds every learner's influence), or run the robust strategy without DP.")
        if not isinstance(self.strategy.start(numel=1, generator=np.random.default_rng(0)), RunningSum):
            raise ConfigError(f"strategy {self.strategy.name!r} is not a weighted mean; it cannot run under DP")
        if self.num_eligible < 1:
            raise ConfigError("DP aggregation needs at least one eligible learner")

    @property
    def name(self) -> str:
        return self.strategy.name

    @property
    def weight_cap(self) -> float:
        return self.dp.weight_cap if self.dp.weight_cap is not None else self.strategy.default_weight_cap

    @property
    def expected_participants(self) -> float:
        return self.dp.sample_rate * self.num_eligible

    @property
    def noise_std(self) -> float:
        """Standard deviation of the noise added to each coordinate of the sum."""
        return self.dp.noise_multiplier * self.dp.clip_norm

    def weight(self, update: LearnerUpdate) -> float:
        return capped_weight(self.strategy.weight(update), self.weight_cap)

    def start(self, *, numel: int, generator: np.random.Generator) -> PrivateRound:
        return PrivateRound(numel, noise_std=self.noise_std, denominator=self.expected_participants,
                            generator=generator)


@dataclass
class CappedWeights:
    """A mean-type strategy whose weights are mapped into [0, 1] by a fixed cap, without noise:
    what a site of a federation adds up (the coordinator adds the noise to the sum across
    sites). Every learner then moves the sum by at most C, as under DP."""

    strategy: Strategy
    weight_cap: float | None = None  # None: the strategy's default cap

    def __post_init__(self) -> None:
        if self.strategy.robust:
            raise ConfigError(f"the {self.strategy.name!r} strategy has no capped-weight sum")
        if self.weight_cap is not None and not self.weight_cap > 0:
            raise ConfigError(f"weight cap must be > 0, got {self.weight_cap}")

    @property
    def name(self) -> str:
        return self.strategy.name

    @property
    def cap(self) -> float:
        return self.weight_cap if self.weight_cap is not None else self.strategy.default_weight_cap

    def weight(self, update: LearnerUpdate) -> float:
        return capped_weight(self.strategy.weight(update), self.cap)

    def start(self, *, numel: int, generator: np.random.Generator) -> RunningSum:
        return RunningSum(numel)
