"""What travels between the coordinator and the sites, as plain values and numpy arrays.

* `RoundSettings` (coordinator -> sites, a Flower ConfigRecord): the version, the strategy, the
  user-level DP settings and the local training options of one round.
* `SitePayload` (site -> coordinator): the sum of the site's sampled learners' clipped,
  weighted updates and four counts (weight total, sampled, accepted, pool). Under secure
  aggregation the coordinator only ever learns the sum of these payloads across sites.
* `check_payload`: why a payload (one site's, or the secure sum) cannot be aggregated.

Bounds that make the checks meaningful: every learner's update is clipped to C and weighted
by w >= 0, so a sum of updates has L2 norm <= C x (sum of the weights); with capped weights
(under DP or secure aggregation) every w <= 1, so the weight total <= the accepted count <=
the sampled count <= the pool.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from aivo.errors import ConfigError

STATS = ("weight_total", "num_sampled", "num_accepted", "num_pool")
NORM_SLACK = 1e-6  # relative slack of the norm bound (float summation order)
COUNT_SLACK = 1e-3  # absolute slack of counts that went through quantized secure aggregation


@dataclass(frozen=True)
class RoundSettings:
    """Everything a site needs to compute its part of one round (flat: it travels as a
    Flower ConfigRecord)."""

    round_id: str  # the coordinator's round reference (run and round number)
    version: str  # the main version the round starts from
    version_sha256: str
    strategy: str = "fedavg"
    capped_weights: bool = True  # weights mapped into [0, 1] (DP or secure aggregation)
    weight_cap: float = 0.0  # 0: the strategy's default cap
    score_metric: str = "holdout_accuracy"  # weighted
    dp: bool = True
    noise_multiplier: float = 1.0
    clip_norm: float = 1.0
    sample_rate: float = 1.0
    delta: float = 1e-5
    epsilon_budget: float = 8.0
    accountant: str = "rdp"
    # local training (LocalTrainingConfig's fields that matter for the update)
    epochs: int = 5
    learning_rate: float = 0.05
    batch_size: int = 32
    proximal_mu: float = 0.0
    holdout_fraction: float = 0.2
    min_interactions: int = 5
    freeze_layers: str = "encoder"
    seed: int = -1  # -1: fresh OS entropy at every site (required for real privacy)
    secure: bool = True  # the payload travels through SecAgg+
    payload_scale: float = 1.0  # secure aggregation: the payload is divided by this before quantization

    def __post_init__(self) -> None:
        if not (self.clip_norm > 0 and math.isfinite(self.clip_norm)):
            raise ConfigError(f"clip norm must be a finite number > 0, got {self.clip_norm}")
        if not 0 < self.sample_rate <= 1:
            raise ConfigError(f"sampling rate must be in (0, 1], got {self.sample_rate}")
        if not (self.noise_multiplier >= 0 and math.isfinite(self.noise_multiplier)):
            raise ConfigError(f"noise multiplier must be a finite number >= 0, got {self.noise_multiplier}")
        if not self.payload_scale > 0:
            raise ConfigError(f"payload scale must be > 0, got {self.payload_scale}")

    def to_config(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "RoundSettings":
        known = {f.name: f.type for f in fields(cls)}
        missing = [name for name in ("round_id", "version", "version_sha256") if name not in config]
        if missing:
            raise ConfigError(f"round settings lack {', '.join(missing)}")
        return cls(**{k: v for k, v in config.items() if k in known})


@dataclass
class SitePayload:
    total: np.ndarray  # (d,) float64: sum of the sampled learners' clipped, weighted updates
    weight_total: float
    num_sampled: int
    num_accepted: int
    num_pool: int

    def to_arrays(self, *, scale: float = 1.0) -> list[np.ndarray]:
        """[sum (d,), stats (4,)] divided by `scale` (float64): Flower's array layout."""
        stats = np.array([self.weight_total, self.num_sampled, self.num_accepted, self.num_pool], dtype=np.float64)
        return [np.asarray(self.total, dtype=np.float64) / scale, stats / scale]

    @classmethod
    def from_arrays(cls, arrays: list[np.ndarray], *, numel: int, scale: float = 1.0,
                    rounded: bool = False) -> "SitePayload":
        """The inverse of `to_arrays`; raises ValueError naming what does not fit (wrong number
        or shapes of arrays, counts that are not whole numbers). `rounded`: counts that went
        through quantized secure aggregation are rounded to the nearest integer."""
        if len(arrays) != 2:
            raise ValueError(f"expected 2 arrays (sum, counts), got {len(arrays)}")
        total, stats = (np.asarray(a, dtype=np.float64) * scale for a in arrays)
        if total.shape != (numel,):
            raise ValueError(f"the sum has shape {total.shape}, expected ({numel},)")
        if stats.shape != (len(STATS),):
            raise ValueError(f"the counts have shape {stats.shape}, expected ({len(STATS)},)")
        if not np.isfinite(stats).all():
            raise ValueError("the counts contain NaN or Inf")
        counts = stats[1:]
        whole = np.round(counts)
        if np.abs(counts - whole).max(initial=0) > (COUNT_SLACK * max(1.0, scale) if rounded else 0.0):
            raise ValueError(f"the counts are not whole numbers: {counts.tolist()}")
        return cls(total=total, weight_total=float(stats[0]), num_sampled=int(whole[0]),
                   num_accepted=int(whole[1]), num_pool=int(whole[2]))

    def summary(self) -> dict[str, Any]:
        return {"norm": float(np.linalg.norm(self.total)) if np.isfinite(self.total).all() else None,
                "weight_total": self.weight_total, "sampled": self.num_sampled, "accepted": self.num_accepted,
                "pool": self.num_pool}


def check_payload(payload: SitePayload, *, clip_norm: float, capped_weights: bool,
                  tolerance: float = 0.0) -> str | None:
    """Why `payload` (one site's, or the sum across sites) cannot be aggregated, or None.
    `tolerance`: absolute slack for values that went through quantized secure aggregation."""
    if not np.isfinite(payload.total).all():
        return "the sum contains NaN or Inf values"
    if not math.isfinite(payload.weight_total) or payload.weight_total < -tolerance:
        return f"invalid weight total {payload.weight_total}"
    if min(payload.num_sampled, payload.num_accepted, payload.num_pool) < 0:
        return "negative counts"
    if payload.num_accepted > payload.num_sampled:
        return f"counts do not match: {payload.num_accepted} accepted of {payload.num_sampled} sampled"
    if payload.num_sampled > payload.num_pool:
        return f"counts do not match: {payload.num_sampled} sampled from a pool of {payload.num_pool}"
    if payload.num_accepted == 0 and (payload.weight_total > tolerance or np.abs(payload.total).max(initial=0) > tolerance):
        return "counts do not match: a non-zero sum from no accepted learner"
    if capped_weights and payload.weight_total > payload.num_accepted + tolerance:
        return (f"counts do not match: weight total {payload.weight_total:.6g} above the {payload.num_accepted} "
                "accepted learners (each weighs at most 1)")
    norm = float(np.linalg.norm(payload.total))
    bound = clip_norm * max(payload.weight_total, 0.0)
    if norm > bound * (1 + NORM_SLACK) + tolerance * math.sqrt(len(payload.total)):
        return (f"the sum's norm {norm:.6g} exceeds clip norm x weight total = {bound:.6g}: the updates were not "
                "clipped, or the counts do not match the sum")
    return None
