"""Drift statistics and the drift score: pure functions over profiles (no database here).

A *profile* summarizes what a model sees: category mixes (items, skills, and item types,
subjects and grades when the data has them), a sample of log response times, a sample of the
model's predictions, and its AUC. The reference profile is taken when a version is promoted;
the current one from recent interactions. Three signals, each in [0, 1]:

- input drift   = max over the mixes of the Jensen-Shannon divergence (base 2, in [0, 1]) between
                  the reference and current mixes, and the Kolmogorov-Smirnov statistic between
                  the response-time samples. PSI of each is reported alongside (the usual reading:
                  < 0.1 stable, 0.1-0.25 moderate, > 0.25 large) but not scored: it is unbounded.
- prediction drift = KS statistic between the reference and current prediction samples.
- performance drift = max(0, AUC_ref - AUC_now) / (AUC_ref - 0.5), capped at 1: the share of
                  the model's skill above chance that it has lost on recent labeled interactions.

score = sum(w_s * signal_s) / sum(w_s) over the signals that could be measured (weights 1, 1, 1
by default). A signal is left out when either side has fewer than `min_samples` observations.
Items and skills are compared on the reference's `top_k` most frequent categories plus one
"other" bucket: with thousands of items most are rare, and their sampling noise alone would look
like drift.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial.distance import jensenshannon

from aivo.data.schema import split_skills

OTHER = "__other__"
MIX_COLUMNS = ("item_type", "subject", "grade")  # compared when present on both sides
EPS = 1e-6


@dataclass(frozen=True)
class DriftConfig:
    top_k: int = 100  # categories kept per mix (the rest is one bucket)
    sample_size: int = 2000  # response times and predictions kept in a profile
    min_samples: int = 200  # fewer observations on either side: the signal is not measured
    weights: tuple[float, float, float] = (1.0, 1.0, 1.0)  # input, prediction, performance

    def __post_init__(self) -> None:
        if self.top_k < 1 or self.sample_size < 10 or self.min_samples < 1:
            raise ValueError("top_k >= 1, sample_size >= 10 and min_samples >= 1 are required")
        if len(self.weights) != 3 or any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
            raise ValueError("weights must be three non-negative numbers, not all zero")
        object.__setattr__(self, "weights", tuple(float(w) for w in self.weights))


@dataclass
class Profile:
    num_interactions: int
    num_learners: int
    mixes: dict[str, dict[str, int]]  # name -> category -> count (top_k + OTHER for items and skills)
    response_times: list[float]  # sample of log1p(seconds)
    predictions: list[float]  # sample of P(correct) on scored rows
    auc: float | None
    num_predictions: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Profile":
        return cls(**{k: data[k] for k in ("num_interactions", "num_learners", "mixes", "response_times",
                                           "predictions", "auc")}, num_predictions=int(data.get("num_predictions", 0)))


# --- statistics (pure) -------------------------------------------------------------------------

def _proportions(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total > 0 else np.full(len(counts), 1.0 / len(counts))


def psi(expected: np.ndarray, actual: np.ndarray, *, eps: float = 1e-4) -> float:
    """Population stability index of two histograms (counts or proportions over the same bins):
    sum (a - e) * ln(a / e), with empty bins floored at `eps` so that the sum stays finite."""
    e = np.maximum(_proportions(np.asarray(expected, dtype=np.float64)), eps)
    a = np.maximum(_proportions(np.asarray(actual, dtype=np.float64)), eps)
    e, a = e / e.sum(), a / a.sum()
    return float(np.sum((a - e) * np.log(a / e)))


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence in bits (0 identical .. 1 disjoint): scipy's distance, squared."""
    distance = jensenshannon(_proportions(np.asarray(p, dtype=np.float64)),
                             _proportions(np.asarray(q, dtype=np.float64)), base=2)
    return float(min(1.0, max(0.0, distance)) ** 2)


def ks_statistic(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """(KS statistic, p-value) of two samples (scipy.stats.ks_2samp)."""
    result = stats.ks_2samp(np.asarray(reference, dtype=np.float64), np.asarray(current, dtype=np.float64))
    return float(result.statistic), float(result.pvalue)


def quantile_psi(reference: np.ndarray, current: np.ndarray, *, bins: int = 10) -> float:
    """PSI of `current` over the reference's decile bins (continuous values)."""
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    ref_counts = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=len(edges) + 1)
    cur_counts = np.bincount(np.searchsorted(edges, current, side="right"), minlength=len(edges) + 1)
    return psi(ref_counts, cur_counts)


def align_mix(reference: Mapping[str, int], current: Mapping[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """Counts of both mixes over the reference's categories; anything else goes to OTHER."""
    categories = [c for c in reference if c != OTHER] + [OTHER]
    known = set(categories)
    ref = np.array([reference.get(c, 0) for c in categories], dtype=np.float64)
    cur = np.array([current.get(c, 0) for c in categories[:-1]] +
                   [sum(v for c, v in current.items() if c not in known or c == OTHER)], dtype=np.float64)
    return ref, cur


def performance_drift(reference_auc: float | None, current_auc: float | None) -> float | None:
    if reference_auc is None or current_auc is None or reference_auc <= 0.5:
        return None
    return float(min(1.0, max(0.0, (reference_auc - current_auc) / (reference_auc - 0.5))))


# --- profiles ----------------------------------------------------------------------------------

def _sample(values: np.ndarray, size: int, rng: np.random.Generator) -> list[float]:
    values = values[np.isfinite(values)]
    if len(values) > size:
        values = rng.choice(values, size=size, replace=False)
    return [round(float(v), 6) for v in values]


def _top_counts(series: pd.Series, top_k: int | None) -> dict[str, int]:
    counts = series.astype(str).value_counts()
    if top_k is None or len(counts) <= top_k:
        return {str(k): int(v) for k, v in counts.items()}
    out = {str(k): int(v) for k, v in counts.iloc[:top_k].items()}
    out[OTHER] = int(counts.iloc[top_k:].sum())
    return out


def build_profile(frame: pd.DataFrame, *, predictions: np.ndarray | None = None, labels: np.ndarray | None = None,
                  config: DriftConfig = DriftConfig(), top_k: int | None = None, seed: int = 0) -> Profile:
    """Profile of interaction rows `frame` (schema columns). `predictions`/`labels`: the model's
    P(correct) on scored rows and the answers (for AUC); `top_k=None` keeps every category (the
    current side, compared on the reference's categories)."""
    rng = np.random.default_rng(seed)
    skills = pd.Series([s for value in frame["skill_ids"].astype(str) for s in split_skills(value)], dtype=object)
    mixes = {"item": _top_counts(frame["item_id"], top_k), "skill": _top_counts(skills, top_k)}
    for column in MIX_COLUMNS:
        if column in frame.columns and frame[column].notna().any():
            mixes[column] = _top_counts(frame[column].dropna(), None)
    times: list[float] = []
    if "response_time_s" in frame.columns:
        times = _sample(np.log1p(frame["response_time_s"].to_numpy(dtype=np.float64)), config.sample_size, rng)
    preds: list[float] = []
    auc = None
    if predictions is not None:
        predictions = np.asarray(predictions, dtype=np.float64)
        preds = _sample(predictions, config.sample_size, rng)
        if labels is not None and len(np.unique(labels)) == 2 and len(labels) >= config.min_samples:
            # start-up: scikit-learn loads only when a profile has labels
            from sklearn.metrics import roc_auc_score

            auc = float(roc_auc_score(labels, predictions))
    return Profile(num_interactions=int(len(frame)), num_learners=int(frame["learner_id"].nunique()), mixes=mixes,
                   response_times=times, predictions=preds, auc=auc,
                   num_predictions=0 if predictions is None else int(len(predictions)))


# --- the score ---------------------------------------------------------------------------------

@dataclass
class DriftSignals:
    input: float | None
    prediction: float | None
    performance: float | None
    score: float | None
    components: dict[str, dict[str, Any]] = field(default_factory=dict)  # per statistic, for the report

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare_profiles(reference: Profile, current: Profile, *, config: DriftConfig = DriftConfig()) -> DriftSignals:
    components: dict[str, dict[str, Any]] = {}
    input_parts: list[float] = []
    enough_inputs = min(reference.num_interactions, current.num_interactions) >= config.min_samples
    for name, ref_mix in reference.mixes.items():
        cur_mix = current.mixes.get(name)
        if cur_mix is None or not enough_inputs:
            continue
        ref, cur = align_mix(ref_mix, cur_mix)
        js = js_divergence(ref, cur)
        components[f"{name}_mix"] = {"js_divergence": js, "psi": psi(ref, cur), "categories": len(ref)}
        input_parts.append(js)
    ref_t, cur_t = np.asarray(reference.response_times), np.asarray(current.response_times)
    if min(len(ref_t), len(cur_t)) >= config.min_samples:
        ks, p_value = ks_statistic(ref_t, cur_t)
        components["response_time"] = {"ks": ks, "p_value": p_value, "psi": quantile_psi(ref_t, cur_t),
                                       "median_ratio": float(math.exp(np.median(cur_t)) - 1) /
                                       max(EPS, float(math.exp(np.median(ref_t)) - 1))}
        input_parts.append(ks)
    input_signal = max(input_parts) if input_parts else None

    prediction_signal = None
    ref_p, cur_p = np.asarray(reference.predictions), np.asarray(current.predictions)
    if min(len(ref_p), len(cur_p)) >= config.min_samples:
        ks, p_value = ks_statistic(ref_p, cur_p)
        components["prediction"] = {"ks": ks, "p_value": p_value, "psi": quantile_psi(ref_p, cur_p),
                                    "mean_reference": float(ref_p.mean()), "mean_current": float(cur_p.mean())}
        prediction_signal = ks
    performance_signal = performance_drift(reference.auc, current.auc)
    components["performance"] = {"auc_reference": reference.auc, "auc_current": current.auc}

    signals = (input_signal, prediction_signal, performance_signal)
    measured = [(w, s) for w, s in zip(config.weights, signals) if s is not None and w > 0]
    score = sum(w * s for w, s in measured) / sum(w for w, _ in measured) if measured else None
    return DriftSignals(input=input_signal, prediction=prediction_signal, performance=performance_signal,
                        score=None if score is None else float(score), components=components)
