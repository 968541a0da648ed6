"""Privacy accountants behind one small interface, chosen by name through a registry.

Every epsilon AIVO reports comes from a library accountant: Opacus' RDP and PRV accountants,
or Google's dp-accounting PLD accountant. Nothing here computes a privacy bound itself; the
classes only translate a history of sampled-Gaussian steps into the library's calls.

A history is a list of `(noise_multiplier, sample_rate, steps)` entries (Opacus' own layout):
`steps` compositions of the Poisson-subsampled Gaussian mechanism with rate `sample_rate` and
noise standard deviation `noise_multiplier` times the sensitivity.

    acc = make_accountant("rdp")
    acc.step(noise_multiplier=1.0, sample_rate=0.01, steps=1000)
    acc.get_epsilon(delta=1e-5)      # 2.10
"""

from __future__ import annotations

import math
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from aivo.errors import ConfigError

HistoryEntry = tuple[float, float, int]  # (noise_multiplier, sample_rate, steps)
STATE_KIND = "aivo.privacy.accountant"


def normalize_history(history: Iterable[Sequence[float]]) -> tuple[HistoryEntry, ...]:
    """Validated history with consecutive identical (sigma, q) runs merged; empty steps dropped."""
    merged: list[HistoryEntry] = []
    for entry in history:
        if len(entry) != 3:
            raise ValueError(f"a history entry is (noise_multiplier, sample_rate, steps), got {entry!r}")
        sigma, q, steps = float(entry[0]), float(entry[1]), int(entry[2])
        check_step(noise_multiplier=sigma, sample_rate=q)
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        if steps == 0:
            continue
        if merged and merged[-1][0] == sigma and merged[-1][1] == q:
            merged[-1] = (sigma, q, merged[-1][2] + steps)
        else:
            merged.append((sigma, q, steps))
    return tuple(merged)


def check_step(*, noise_multiplier: float, sample_rate: float) -> None:
    if not (noise_multiplier >= 0 and math.isfinite(noise_multiplier)):
        raise ValueError(f"noise_multiplier must be a finite number >= 0, got {noise_multiplier}")
    if not 0 < sample_rate <= 1:
        raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}")


def _check_delta(delta: float) -> None:
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")


class Accountant(ABC):
    """Composes sampled-Gaussian steps and answers epsilon at a given delta."""

    name: str = ""

    def __init__(self) -> None:
        self._history: tuple[HistoryEntry, ...] = ()

    @property
    def history(self) -> tuple[HistoryEntry, ...]:
        return self._history

    def step(self, *, noise_multiplier: float, sample_rate: float, steps: int = 1) -> None:
        self._history = normalize_history(self._history + ((noise_multiplier, sample_rate, steps),))

    def get_epsilon(self, *, delta: float) -> float:
        """Epsilon spent so far at `delta`: 0 with no history, inf if any step had no noise."""
        _check_delta(delta)
        if not self._history:
            return 0.0
        if any(sigma == 0 for sigma, _, _ in self._history):
            return math.inf
        return self._epsilon(self._history, delta)

    @abstractmethod
    def _epsilon(self, history: tuple[HistoryEntry, ...], delta: float) -> float:
        """Epsilon of a non-empty history whose noise multipliers are all > 0."""

    def state_dict(self) -> dict[str, Any]:
        return {"kind": STATE_KIND, "accountant": self.name, "history": [list(e) for e in self._history]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("kind") != STATE_KIND:
            raise ValueError(f"not an accountant state (kind {state.get('kind')!r})")
        if state.get("accountant") != self.name:
            raise ValueError(f"state of the {state.get('accountant')!r} accountant given to {self.name!r}")
        self._history = normalize_history(state.get("history", []))


class OpacusRDPAccountant(Accountant):
    """Opacus' Rényi-DP accountant (the analysis of Mironov et al. for the sampled Gaussian).

    Same computation as `opacus.accountants.RDPAccountant`: Opacus' `compute_rdp` per history
    entry (RDP composes additively, so an entry of n steps is n times one step; the one-step
    curve is memoized per (sigma, q)) and Opacus' `get_privacy_spent` for the conversion."""

    name = "rdp"

    def _epsilon(self, history, delta):
        # start-up: Opacus loads only when an accountant computes
        from opacus.accountants import RDPAccountant
        from opacus.accountants.analysis import rdp as analysis

        orders = RDPAccountant.DEFAULT_ALPHAS
        total = sum(steps * _rdp_one_step(sigma, q) for sigma, q, steps in history)
        with warnings.catch_warnings():
            # "Optimal order is the largest alpha": harmless; it only happens for huge epsilons.
            warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
            eps, _ = analysis.get_privacy_spent(orders=orders, rdp=total, delta=delta)
        return float(eps)


@lru_cache(maxsize=1024)
def _rdp_one_step(sigma: float, q: float):
    # start-up: Opacus loads only when an accountant computes
    from opacus.accountants import RDPAccountant
    from opacus.accountants.analysis import rdp as analysis

    return analysis.compute_rdp(q=q, noise_multiplier=sigma, steps=1, orders=RDPAccountant.DEFAULT_ALPHAS)


class OpacusPRVAccountant(Accountant):
    """Opacus' privacy-random-variable accountant (Gopi et al.): tighter than RDP; returns the
    upper bound of its numerical estimate."""

    name = "prv"

    def _epsilon(self, history, delta):
        # start-up: Opacus loads only when an accountant computes
        from opacus.accountants import PRVAccountant

        acc = PRVAccountant()
        acc.history = list(history)
        with np.errstate(divide="ignore", invalid="ignore"):  # log(1 - q) at q = 1 is -inf: expected
            return float(acc.get_epsilon(delta=delta))


class PLDAccountant(Accountant):
    """Google dp-accounting's privacy-loss-distribution accountant (Poisson-sampled Gaussian)."""

    name = "pld"

    def _epsilon(self, history, delta):
        # start-up: dp-accounting loads only when the PLD accountant computes
        import dp_accounting
        from dp_accounting.pld import PLDAccountant as _PLD

        acc = _PLD()
        for sigma, q, steps in history:
            event = dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma))
            acc.compose(event, steps)
        return float(acc.get_epsilon(delta))


# --- registry ----------------------------------------------------------------------------------
_ACCOUNTANTS: dict[str, Callable[[], Accountant]] = {}


def register_accountant(name: str, factory: Callable[[], Accountant]) -> None:
    """Make an accountant available by name; a name can be registered once."""
    if not name or not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"invalid accountant name {name!r}")
    if name in _ACCOUNTANTS:
        raise ValueError(f"an accountant named {name!r} is already registered")
    _ACCOUNTANTS[name] = factory


def accountant_names() -> tuple[str, ...]:
    return tuple(sorted(_ACCOUNTANTS))


def make_accountant(name: str, *, history: Iterable[Sequence[float]] = ()) -> Accountant:
    try:
        factory = _ACCOUNTANTS[name]
    except KeyError:
        raise ConfigError(f"unknown privacy accountant {name!r}; known: {', '.join(accountant_names())}") from None
    acc = factory()
    acc._history = normalize_history(history)
    return acc


for _cls in (OpacusRDPAccountant, OpacusPRVAccountant, PLDAccountant):
    register_accountant(_cls.name, _cls)


# --- pure helpers -------------------------------------------------------------------------------
@lru_cache(maxsize=4096)
def _cached_epsilon(accountant: str, history: tuple[HistoryEntry, ...], delta: float) -> float:
    return make_accountant(accountant, history=history).get_epsilon(delta=delta)


def epsilon_for(*, history: Iterable[Sequence[float]], delta: float, accountant: str = "rdp") -> float:
    """Epsilon of a history at `delta` (memoized: learners share few distinct histories)."""
    return _cached_epsilon(accountant, normalize_history(history), float(delta))


def noise_multiplier_for(*, target_epsilon: float, delta: float, sample_rate: float, steps: int,
                         accountant: str = "rdp", epsilon_tolerance: float = 0.01) -> float:
    """The smallest noise multiplier whose `steps` sampled-Gaussian steps stay within
    `target_epsilon` (Opacus' calibration by bisection over its own accountant)."""
    # start-up: Opacus loads only when an accountant computes
    from opacus.accountants.utils import get_noise_multiplier

    if accountant not in ("rdp", "prv"):
        raise ConfigError("noise calibration supports the 'rdp' and 'prv' accountants")
    check_step(noise_multiplier=1.0, sample_rate=sample_rate)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
        return float(get_noise_multiplier(target_epsilon=target_epsilon, target_delta=delta, sample_rate=sample_rate,
                                          steps=steps, accountant=accountant, epsilon_tolerance=epsilon_tolerance))


def max_steps_within(*, budget: float, delta: float, noise_multiplier: float, sample_rate: float,
                     accountant: str = "rdp", prior: Iterable[Sequence[float]] = (), limit: int = 100_000) -> int:
    """How many more steps of (noise_multiplier, sample_rate) fit in `budget` after `prior`
    (0 if not even one does; `limit` if at least that many do). Bisection on the accountant."""
    prior = normalize_history(prior)

    def fits(steps: int) -> bool:
        history = prior + ((noise_multiplier, sample_rate, steps),)
        return epsilon_for(history=history, delta=delta, accountant=accountant) <= budget

    if noise_multiplier == 0 or not fits(1):
        return 0
    low, high = 1, 2
    while high <= limit and fits(high):
        low, high = high, high * 2
    if high > limit:
        return limit if fits(limit) else _bisect(fits, low, limit)
    return _bisect(fits, low, high)


def _bisect(fits: Callable[[int], bool], low: int, high: int) -> int:
    """Largest n in [low, high) with fits(n), given fits(low) and not fits(high)."""
    while high - low > 1:
        mid = (low + high) // 2
        if fits(mid):
            low = mid
        else:
            high = mid
    return low
