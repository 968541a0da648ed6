"""The evaluation harness: thresholds a candidate must meet before it may be promoted.

A policy names bounds on metrics. Higher-is-better metrics (AUC, accuracy, F1, precision,
recall; the tutor's pedagogy and safety scores) are minimums; lower-is-better ones (ECE,
log-loss, the fairness gap) are maximums. The fairness gap is `aivo.data.metrics.subgroup_gap`:
the largest minus the smallest AUC (or `gap_metric`) across the subgroups of each `group_by`
column (accommodation profile, grade, ...), groups under `min_group_size` predictions or
`min_group_learners` learners left out;
the check uses the largest gap over the columns. A gap that cannot be measured (no column, or
fewer than two groups large enough) is reported as skipped, not as a failure; a missing
quality metric fails.

    policy = HarnessPolicy.from_mapping({"thresholds": {"auc": 0.7, "subgroup_gap": 0.08}},
                                        model_kind="main_brain")
    report = evaluate_brain_candidate(brain=brain, test=split.test, policy=policy)
    report.passed
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from aivo.brain.predict import evaluate
from aivo.data.metrics import subgroup_gap
from aivo.errors import DataError

if TYPE_CHECKING:
    from aivo.brain.bundle import TrainedBrain
    from aivo.brain.predict import Evaluation
    from aivo.data.schema import InteractionLog

MINIMUMS = ("auc", "accuracy", "f1", "precision", "recall", "pedagogy_score", "safety_score")
MAXIMUMS = ("ece", "log_loss", "subgroup_gap")
MODEL_KINDS = ("main_brain", "tutor")
# Defaults: a floor that blocks a broken model, a fairness gap a teacher would notice; the tutor's
# from the seed design's trainer policy.
DEFAULT_THRESHOLDS: dict[str, dict[str, float]] = {
    "main_brain": {"auc": 0.60, "subgroup_gap": 0.15},
    "tutor": {"pedagogy_score": 0.80, "safety_score": 0.90},
}
DEFAULT_GROUP_BY = ("accommodation", "grade")


@dataclass(frozen=True)
class HarnessPolicy:
    thresholds: dict[str, float]
    group_by: tuple[str, ...] = DEFAULT_GROUP_BY
    gap_metric: str = "auc"
    min_group_size: int = 50  # predictions; smaller subgroups' AUC is noise...
    min_group_learners: int = 10  # ...and so is the AUC of a handful of learners, however many answers

    def __post_init__(self) -> None:
        unknown = sorted(set(self.thresholds) - set(MINIMUMS) - set(MAXIMUMS))
        if unknown:
            raise DataError(f"unknown threshold metric(s): {', '.join(unknown)}; "
                            f"known: {', '.join(MINIMUMS + MAXIMUMS)}")
        for name, bound in self.thresholds.items():
            if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not math.isfinite(bound):
                raise DataError(f"threshold {name} must be a number, got {bound!r}")
        if self.gap_metric not in ("auc", "accuracy", "f1", "precision", "recall", "ece", "log_loss"):
            raise DataError(f"gap_metric must be a Main Brain metric such as auc, got {self.gap_metric!r}")
        if self.min_group_size < 1 or self.min_group_learners < 1:
            raise DataError("min_group_size and min_group_learners must be at least 1")
        object.__setattr__(self, "group_by", tuple(self.group_by))
        object.__setattr__(self, "thresholds", {k: float(v) for k, v in self.thresholds.items()})

    @classmethod
    def from_mapping(cls, policy: Mapping[str, Any] | None, *, model_kind: str) -> "HarnessPolicy":
        """From a job's `policy` (`thresholds`, `group_by`, `gap_metric`, `min_group_size`); the
        model kind's defaults fill the thresholds it does not name."""
        if model_kind not in MODEL_KINDS:
            raise DataError(f"no evaluation harness for model kind {model_kind!r}")
        policy = dict(policy or {})
        thresholds = policy.get("thresholds") or {}
        if not isinstance(thresholds, Mapping):
            raise DataError("policy.thresholds must be an object such as {\"auc\": 0.7, \"subgroup_gap\": 0.1}")
        for name, bound in thresholds.items():
            # Every bound is a finite number (null switches a default off): a NaN or an infinity from the
            # CLI's JSON (Python reads `Infinity`) would be stored, and a check against it means nothing.
            if bound is not None and (isinstance(bound, bool) or not isinstance(bound, (int, float))
                                      or not math.isfinite(bound)):
                raise DataError(f"policy.thresholds.{str(name)[:40]} must be a finite number or null, "
                                f"got {str(bound)[:40]!r}")
        merged = {**DEFAULT_THRESHOLDS[model_kind], **thresholds}
        merged = {k: v for k, v in merged.items() if v is not None}  # null switches a default off
        group_by = policy.get("group_by", DEFAULT_GROUP_BY)
        if isinstance(group_by, str) or not isinstance(group_by, Sequence):
            raise DataError("policy.group_by must be a list of column names")
        return cls(thresholds=merged, group_by=tuple(map(str, group_by)),
                   gap_metric=str(policy.get("gap_metric", "auc")),
                   min_group_size=_whole(policy, "min_group_size", 50),
                   min_group_learners=_whole(policy, "min_group_learners", 10))

    def to_dict(self) -> dict[str, Any]:
        return {"thresholds": dict(self.thresholds), "group_by": list(self.group_by),
                "gap_metric": self.gap_metric, "min_group_size": self.min_group_size,
                "min_group_learners": self.min_group_learners}


_MAX_WHOLE = 2**31 - 1


def _whole(policy: Mapping[str, Any], name: str, default: int) -> int:
    value = policy.get(name, default)
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or value != int(value) or abs(value) > _MAX_WHOLE):  # Infinity was an OverflowError (a traceback)
        raise DataError(f"policy.{name} must be a whole number up to {_MAX_WHOLE:,}, got {str(value)[:40]!r}")
    return int(value)


@dataclass(frozen=True)
class Check:
    metric: str
    bound: float
    kind: str  # min | max
    value: float | None
    passed: bool
    note: str


@dataclass(frozen=True)
class EvaluationReport:
    passed: bool
    checks: list[Check]
    metrics: dict[str, float | None]  # the values checked, by metric name
    subgroup_gaps: dict[str, float | None] = field(default_factory=dict)  # column -> gap
    policy: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)  # full metrics, sizes, what was evaluated

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def summary(self) -> str:
        if self.passed:
            return "all thresholds met: " + ", ".join(c.note for c in self.checks)
        return "thresholds not met: " + "; ".join(c.note for c in self.failures)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["summary"] = self.summary()
        return out


def check_thresholds(*, metrics: Mapping[str, float | None], thresholds: Mapping[str, float],
                     skippable: Sequence[str] = ("subgroup_gap",)) -> list[Check]:
    """One `Check` per threshold. Pure: the values are given."""
    checks = []
    for name, bound in sorted(thresholds.items()):
        kind = "min" if name in MINIMUMS else "max"
        value = metrics.get(name)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            skip = name in skippable
            checks.append(Check(name, bound, kind, None, skip,
                                f"{name} not measurable ({'skipped' if skip else 'fails: needed to judge quality'})"))
            continue
        passed = value >= bound if kind == "min" else value <= bound
        sign = ">=" if kind == "min" else "<="
        checks.append(Check(name, bound, kind, float(value), passed,
                            f"{name} {value:.4f} {sign} {bound:.4f}" if passed
                            else f"{name} {value:.4f} is not {sign} {bound:.4f}"))
    return checks


def brain_metrics(evaluation: "Evaluation", policy: HarnessPolicy,
                  learners_per_group: Mapping[str, Mapping[str, int]] | None = None
                  ) -> tuple[dict[str, float | None], dict[str, float | None]]:
    """(metrics by name, fairness gap per group column) of a Main Brain evaluation.
    `learners_per_group`: column -> value -> learners, to leave out groups of too few learners."""
    metrics: dict[str, float | None] = dict(evaluation.metrics.as_dict())
    gaps: dict[str, float | None] = {}
    for column, groups in evaluation.subgroups.items():
        counts = (learners_per_group or {}).get(column)
        large = {value: m for value, m in groups.items() if m.n >= policy.min_group_size
                 and (counts is None or counts.get(value, 0) >= policy.min_group_learners)}
        gaps[column] = subgroup_gap(large, metric=policy.gap_metric)
    measured = [g for g in gaps.values() if g is not None]
    metrics["subgroup_gap"] = max(measured) if measured else None
    return metrics, gaps


def report_from_evaluation(evaluation: "Evaluation", policy: HarnessPolicy, *,
                           learners_per_group: Mapping[str, Mapping[str, int]] | None = None,
                           details: dict[str, Any] | None = None) -> EvaluationReport:
    metrics, gaps = brain_metrics(evaluation, policy, learners_per_group)
    checks = check_thresholds(metrics=metrics, thresholds=policy.thresholds)
    return EvaluationReport(passed=all(c.passed for c in checks), checks=checks,
                            metrics={k: v for k, v in metrics.items() if k in policy.thresholds or k == "auc"},
                            subgroup_gaps=gaps, policy=policy.to_dict(),
                            details={"evaluation": evaluation.as_dict(), **(details or {})})


def evaluate_brain_candidate(*, brain: "TrainedBrain", test: "InteractionLog", policy: HarnessPolicy,
                             details: dict[str, Any] | None = None) -> EvaluationReport:
    """The Main Brain `brain` on held-out learners `test`, against `policy`."""
    columns = [c for c in policy.group_by if c in test.frame.columns]
    evaluation = evaluate(brain=brain, log=test, group_by=columns, min_group_size=policy.min_group_size)
    frame = test.frame
    learners = {c: {str(k): int(v) for k, v in frame.groupby(frame[c].astype(str))["learner_id"].nunique().items()}
                for c in columns}
    extra = {"test_learners": test.num_learners, "test_interactions": test.num_interactions,
             "learners_per_group": learners,
             "group_by_missing": [c for c in policy.group_by if c not in columns], **(details or {})}
    return report_from_evaluation(evaluation, policy, learners_per_group=learners, details=extra)
