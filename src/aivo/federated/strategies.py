"""Aggregation strategies: small subclasses of one base, chosen by name through a registry.

Every strategy consumes a stream of (flat update vector, learner update) pairs and produces
one aggregated vector; memory never grows with the number of learners:

* mean-type strategies (`fedavg`, `fedprox`, `weighted`) keep a running weighted sum and the
  sum of weights: exact, O(d) memory;
* robust strategies (`median`, `trimmed-mean`) need every value of a coordinate, which no
  O(d) summary gives exactly. They keep a uniform reservoir of at most `reservoir_size`
  updates (Vitter's algorithm R, driven by the round's seeded generator) and combine it
  coordinate-wise: exact when at most `reservoir_size` learners contribute, an unbiased
  uniform subsample of the learners otherwise. Memory: reservoir_size x d.

The round loop (validation, clipping, DP) is written once in `aivo.federated.aggregate`;
a strategy only says how to weight an update and how to combine.

    strategy = make_strategy("trimmed-mean", trim_fraction=0.1)
    state = strategy.start(numel=d, generator=np.random.default_rng(0))
    for vector, update in stream: state.add(vector, strategy.weight(update))
    aggregated = state.result()
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

import numpy as np

from aivo.errors import ConfigError
from aivo.federated.updates import LearnerUpdate


class RoundState(ABC):
    """What a strategy accumulates during one round."""

    count: int = 0

    @abstractmethod
    def add(self, vector: np.ndarray, weight: float) -> None: ...

    @abstractmethod
    def result(self) -> np.ndarray:
        """(d,) aggregated update. Raises ValueError when nothing was added."""

    @property
    @abstractmethod
    def nbytes(self) -> int:
        """Memory held by the state (for benchmarks)."""


class RunningSum(RoundState):
    """Sum of weight x vector and of the weights: a weighted mean, streamed exactly."""

    def __init__(self, numel: int):
        self.total = np.zeros(numel, dtype=np.float64)
        self.weight_total = 0.0
        self.count = 0

    def add(self, vector: np.ndarray, weight: float) -> None:
        if not (weight >= 0 and math.isfinite(weight)):
            raise ValueError(f"weights must be finite and >= 0, got {weight}")
        if weight == 1.0:  # plain (DP) averaging: no temporary
            self.total += vector
        else:
            self.total += weight * vector
        self.weight_total += weight
        self.count += 1

    def merge(self, *, total: np.ndarray, weight_total: float, count: int) -> None:
        """Add a partial sum computed elsewhere (a site's clipped, weighted updates): the result
        is the same as if its updates had been added here one by one."""
        if total.shape != self.total.shape:
            raise ValueError(f"partial sum of shape {total.shape}, expected {self.total.shape}")
        if not (weight_total >= 0 and math.isfinite(weight_total)) or count < 0:
            raise ValueError(f"partial sums need a finite weight >= 0 and a count >= 0, got {weight_total}, {count}")
        self.total += total
        self.weight_total += weight_total
        self.count += int(count)

    def result(self) -> np.ndarray:
        if self.count == 0 or self.weight_total <= 0:
            raise ValueError("no update with a positive weight to average")
        return self.total / self.weight_total

    @property
    def nbytes(self) -> int:
        return self.total.nbytes


class Reservoir(RoundState):
    """A uniform sample of at most `capacity` vectors (algorithm R) and a coordinate-wise combiner."""

    def __init__(self, numel: int, capacity: int, generator: np.random.Generator,
                 combine: Callable[[np.ndarray], np.ndarray]):
        self.rows = np.zeros((0, numel), dtype=np.float64)
        self.capacity = capacity
        self.generator = generator
        self.combine = combine
        self.count = 0  # updates seen
        self._filled = 0

    def add(self, vector: np.ndarray, weight: float) -> None:
        del weight  # robust strategies weigh every learner alike
        if self._filled < self.capacity:
            if self._filled == len(self.rows):  # grow geometrically up to capacity
                grown = np.zeros((min(self.capacity, max(8, 2 * len(self.rows))), self.rows.shape[1]))
                grown[:self._filled] = self.rows[:self._filled]
                self.rows = grown
            self.rows[self._filled] = vector
            self._filled += 1
        else:
            slot = int(self.generator.integers(0, self.count + 1))
            if slot < self.capacity:
                self.rows[slot] = vector
        self.count += 1

    def result(self) -> np.ndarray:
        if self._filled == 0:
            raise ValueError("no update to combine")
        return self.combine(self.rows[:self._filled])

    @property
    def exact(self) -> bool:
        return self.count <= self.capacity

    @property
    def nbytes(self) -> int:
        return self.rows.nbytes


@dataclass
class Strategy(ABC):
    """Base of every strategy. Subclasses set `name` and override `weight` and/or `start`."""

    name: ClassVar[str] = ""
    robust: ClassVar[bool] = False  # combines order statistics (no bounded L2 sensitivity)
    # Under DP a weight is divided by this cap and clipped to [0, 1] (see aivo.federated.dp).
    default_weight_cap: ClassVar[float] = 1.0

    def __post_init__(self) -> None:
        """Subclasses validate their own fields here."""

    def weight(self, update: LearnerUpdate) -> float:
        return 1.0

    def session_metric(self) -> str | None:
        """The training-session metric each update's score is read from (None: scores unused)."""
        return None

    @abstractmethod
    def start(self, *, numel: int, generator: np.random.Generator) -> RoundState: ...

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, **asdict(self)}


@dataclass
class MeanStrategy(Strategy):
    def start(self, *, numel: int, generator: np.random.Generator) -> RoundState:
        return RunningSum(numel)


@dataclass
class FedAvg(MeanStrategy):
    """Mean of the updates weighted by each learner's number of training examples."""

    name: ClassVar[str] = "fedavg"
    default_weight_cap: ClassVar[float] = 100.0  # examples; learners with more weigh the same under DP

    def weight(self, update: LearnerUpdate) -> float:
        return float(update.num_examples)


@dataclass
class FedProx(FedAvg):
    """FedAvg whose learners trained with a proximal term mu/2 ||w - w_main||^2 (Li et al.):
    the aggregation is FedAvg's; `proximal_mu` is what local training must use."""

    name: ClassVar[str] = "fedprox"
    proximal_mu: float = 0.01

    def __post_init__(self) -> None:
        if not self.proximal_mu > 0:
            raise ConfigError(f"fedprox needs a proximal term mu > 0, got {self.proximal_mu}")


@dataclass
class Weighted(MeanStrategy):
    """Mean weighted by a per-update score (a training-session metric chosen by `score_metric`)."""

    name: ClassVar[str] = "weighted"
    score_metric: str = "holdout_accuracy"

    def weight(self, update: LearnerUpdate) -> float:
        if update.score is None or not np.isfinite(update.score) or update.score < 0:
            raise ValueError(f"update of {update.learner_id} has no usable score ({self.score_metric})")
        return float(update.score)

    def session_metric(self) -> str | None:
        return self.score_metric


@dataclass
class ReservoirStrategy(Strategy):
    robust: ClassVar[bool] = True
    reservoir_size: int = 256  # exact up to this many learners per round; memory reservoir_size x d

    def __post_init__(self) -> None:
        if self.reservoir_size < 1:
            raise ConfigError(f"reservoir_size must be >= 1, got {self.reservoir_size}")

    def start(self, *, numel: int, generator: np.random.Generator) -> RoundState:
        return Reservoir(numel, self.reservoir_size, generator, self.combine)

    @abstractmethod
    def combine(self, rows: np.ndarray) -> np.ndarray:
        """(n, d) updates -> (d,)."""


@dataclass
class Median(ReservoirStrategy):
    """Coordinate-wise median (robust to a minority of arbitrary updates)."""

    name: ClassVar[str] = "median"

    def combine(self, rows: np.ndarray) -> np.ndarray:
        return np.median(rows, axis=0)


@dataclass
class TrimmedMean(ReservoirStrategy):
    """Coordinate-wise mean after dropping the `trim_fraction` largest and smallest values."""

    name: ClassVar[str] = "trimmed-mean"
    trim_fraction: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.trim_fraction < 0.5:
            raise ConfigError(f"trim_fraction must be in [0, 0.5), got {self.trim_fraction}")

    def combine(self, rows: np.ndarray) -> np.ndarray:
        n = len(rows)
        cut = int(self.trim_fraction * n)  # as scipy.stats.trim_mean: floor(fraction * n) per side
        ordered = np.sort(rows, axis=0)
        return ordered[cut:n - cut].mean(axis=0)


# --- registry ----------------------------------------------------------------------------------
_STRATEGIES: dict[str, type[Strategy]] = {}


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    """Make a strategy class available by its `name`; a name can be registered once."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in _STRATEGIES:
        raise ValueError(f"a strategy named {cls.name!r} is already registered")
    _STRATEGIES[cls.name] = cls
    return cls


def strategy_names() -> tuple[str, ...]:
    return tuple(_STRATEGIES)


def _strategy_class(name: str) -> type[Strategy]:
    try:
        return _STRATEGIES[name]
    except KeyError:
        raise ConfigError(f"unknown aggregation strategy {name!r}; known: {', '.join(strategy_names())}") from None


def strategy_options(name: str) -> frozenset[str]:
    """The options the named strategy takes (its dataclass fields)."""
    return frozenset(f.name for f in fields(_strategy_class(name)))


def make_strategy(name: str, *, defaults: Mapping[str, Any] | None = None, **options: Any) -> Strategy:
    """An instance of the named strategy.

    `options` are the caller's choices: one the strategy does not take is an error unless it is
    None. `defaults` are service-wide values (a configured reservoir size, the site's score
    metric): each goes only to the strategies that take it, and a non-None option wins over it.
    """
    cls = _strategy_class(name)
    accepted = strategy_options(name)
    unknown = sorted(k for k, v in options.items() if v is not None and k not in accepted)
    if unknown:
        raise ConfigError(f"strategy {name!r} does not take option(s) {', '.join(unknown)}")
    chosen = {k: v for k, v in (defaults or {}).items() if v is not None and k in accepted}
    chosen.update((k, v) for k, v in options.items() if v is not None)
    return cls(**chosen)


for _cls in (FedAvg, FedProx, Weighted, Median, TrimmedMean):
    register_strategy(_cls)
