"""The dashboard's charts: each one drawn from the fields a service read from the registry (see
the services' dataclasses), with what every point means on hover."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, time, timezone
from typing import Any

from markupsafe import Markup

from aivo.api.plots import Point, Series, Threshold, bar_chart, chart, histogram
from aivo.services.dashboard import TimeRange
from aivo.services.dashboard_drift import DriftRow
from aivo.services.dashboard_learners import MasteryPoint
from aivo.services.dashboard_models import PolicyCurves, VersionRow
from aivo.services.dashboard_rounds import LedgerSummary, RoundRow

_RED, _GREEN, _BLUE, _ORANGE, _GREY, _PURPLE = "#b53f3f", "#3a9a5b", "#2f6db5", "#d9822b", "#8a919e", "#7a5cb5"


def _domain(window: TimeRange | None):
    return window.domain if window is not None else None


def versions_chart(versions: Sequence[VersionRow], window: TimeRange | None = None) -> Markup:
    """Test AUC per version: the line joins the versions that were promoted (the model actually
    served, in order); candidates that were never promoted are separate rings, off the line."""
    rows = sorted((v for v in versions if v.test_auc is not None), key=lambda v: v.created_at)
    served = [Point(v.created_at, v.test_auc, f"{v.version}, {'active now' if v.status == 'active' else 'was active'}")
              for v in rows if v.ever_active]
    candidates = [Point(v.created_at, v.test_auc, f"{v.version}, never promoted") for v in rows if not v.ever_active]
    active = [Point(v.created_at, v.test_auc, v.version) for v in rows if v.status == "active"]
    series = [Series("promoted versions", served, color=_BLUE),
              Series("candidates not promoted", candidates, style="points", marker="ring", color=_ORANGE),
              Series("active now", active, style="points", color=_GREEN)]
    return Markup(chart(series=series, ylabel="test AUC", x_domain=_domain(window),
                        empty="No Main Brain version with a test AUC yet. Train one: `aivo train-main`, or queue a "
                              "training job (POST /v1/scheduler/train-main-brain)."))


def rounds_auc_chart(rounds: Sequence[RoundRow], window: TimeRange | None = None) -> Markup:
    """AUC of the active model before each round and of the round's candidate after: promoted
    candidates as dots, candidates the gate rejected as crosses (the gate's words on hover)."""
    scored = [r for r in rounds if r.auc_before is not None]
    before = [Point(r.at, r.auc_before, f"round {r.update_id}, {r.version_before}") for r in scored]
    applied = [Point(r.at, r.auc_after, f"round {r.update_id} applied: {r.version_after} promoted")
               for r in scored if r.status == "applied" and r.auc_after is not None]
    rejected = [Point(r.at, r.auc_after, f"round {r.update_id} rejected: {r.gate}")
                for r in scored if r.status != "applied" and r.auc_after is not None]
    series = [Series("AUC before the round (active model)", before, color=_BLUE),
              Series("candidate promoted", applied, style="points", color=_GREEN),
              Series("candidate rejected by the gate", rejected, style="points", marker="cross", color=_RED)]
    return Markup(chart(series=series, ylabel="held-out AUC", x_domain=_domain(window),
                        empty="No scored federated round yet. Clone learners and train them locally, then run a "
                              "round: `aivo aggregate` (or POST /v1/federated/aggregate)."))


def epsilon_chart(rounds: Sequence[RoundRow], budget: float, window: TimeRange | None = None) -> Markup:
    """User-level epsilon per round, as the aggregation service recorded it, against the budget."""
    def points(attr: str, what: str) -> list[Point]:
        return [Point(r.at, getattr(r, attr), f"round {r.update_id}: {what}") for r in rounds
                if getattr(r, attr) is not None]

    # Drawn in this order, so that when they coincide (a first round) the worst learner's is on top.
    series = [Series("one round alone", points("epsilon_one_round", "one round"), style="points", color=_GREY),
              Series("federation total (across sites)", points("epsilon_total", "total"), color=_PURPLE),
              Series("median pooled learner after the round", points("epsilon_after_median", "median learner"),
                     color=_BLUE),
              Series("most-charged pooled learner after the round", points("epsilon_after_max", "worst learner"),
                     color=_RED)]
    return Markup(chart(series=series, ylabel="user-level epsilon", thresholds=[Threshold(budget, "budget")],
                        x_domain=_domain(window), y_floor=0.0,
                        empty="No private federated round yet: epsilon is charged when a round with "
                              "differential privacy runs (`aivo aggregate`)."))


def ledger_chart(ledger: LedgerSummary) -> Markup:
    return Markup(histogram(values=ledger.epsilons, xlabel="user-level epsilon spent per learner",
                            vline=(ledger.budget, "budget"),
                            empty="No learner has spent privacy budget yet (the ledger is charged by private "
                                  "federated rounds)."))


def drift_chart(rows: Sequence[DriftRow], window: TimeRange | None, threshold: float) -> Markup:
    scored = [r for r in rows if r.score is not None]
    score = [Point(r.at, r.score, f"{r.version}: {r.verdict}") for r in scored]
    drifted = [Point(r.at, r.score, r.verdict) for r in scored if r.drifted]
    thresholds = sorted({r.threshold for r in rows}) or [threshold]
    series = [Series("drift score", score, color=_BLUE),
              Series("above the threshold", drifted, style="points", marker="cross", color=_RED)]
    extra: list[Series] = []
    if len(thresholds) > 1:  # the threshold changed between checks: draw each check's own
        extra = [Series("threshold at each check", [Point(r.at, r.threshold) for r in rows], style="step",
                        color=_RED, dashed=True)]
    return Markup(chart(series=series + extra, ylabel="drift score",
                        thresholds=[Threshold(thresholds[0], "threshold")] if len(thresholds) == 1 else (),
                        x_domain=_domain(window), y_floor=0.0,
                        empty="No drift check in this time range. Run one: `aivo drift check` (the scheduler "
                              "runs it every DRIFT_CHECK_INTERVAL_HOURS)."))


def drift_signals_chart(rows: Sequence[DriftRow], window: TimeRange | None) -> Markup:
    series = [Series(name, [Point(r.at, getattr(r, attr), r.version or "") for r in rows if getattr(r, attr) is not None],
                     color=color)
              for name, attr, color in (("input (JS divergence / KS)", "input", _BLUE),
                                        ("predictions (KS)", "prediction", _ORANGE),
                                        ("performance (share of AUC above chance lost)", "performance", _PURPLE))]
    return Markup(chart(series=series, ylabel="signal", x_domain=_domain(window), y_floor=0.0,
                        empty="No drift signal measured in this time range."))


def sessions_chart(per_day: Sequence[tuple[date, int]], window: TimeRange | None) -> Markup:
    points = [Point(datetime.combine(d, time(12), tzinfo=timezone.utc), n, "local training sessions")
              for d, n in per_day]
    return Markup(chart(series=[Series("sessions per day", points, color=_BLUE)], ylabel="sessions per day",
                        x_domain=_domain(window), y_floor=0.0, digits=0, include_zero=True, integer=True,
                        empty="No local training session yet: learners' clones train with `aivo train-local` "
                              "or a learner_model job."))


def learning_curve(history: Sequence[dict[str, Any]], *, live: bool = False) -> Markup:
    """Validation AUC and training loss per epoch (each on its own axis)."""
    auc = [Point(h.get("epoch"), h.get("validation_auc")) for h in history
           if h.get("epoch") is not None and h.get("validation_auc") is not None]
    loss = [Point(h.get("epoch"), h.get("train_loss")) for h in history
            if h.get("epoch") is not None and h.get("train_loss") is not None]
    empty = ("No epoch finished yet: the curve appears after the first epoch." if live
             else "No per-epoch history was recorded for this training.")
    first = chart(series=[Series("validation AUC", auc, color=_BLUE)], ylabel="validation AUC", xlabel="epoch",
                  xname="epoch", empty=empty)
    if not loss:
        return Markup(first)
    second = chart(series=[Series("training loss", loss, color=_ORANGE)], ylabel="training loss", xlabel="epoch",
                   xname="epoch")
    return Markup(f'<div class="grid">{first}{second}</div>')


def subgroup_chart(rows: Sequence[tuple[str, str, float | None, float | None, Any, Any]], a: str, b: str) -> Markup:
    labels = [f"{column}={group}" for column, group, *_ in rows]
    return Markup(bar_chart(labels=labels, values=[], groups={a: [r[2] for r in rows], b: [r[3] for r in rows]},
                            ylabel="test AUC", y_floor=None, y_ceiling=1.0,
                            empty="Neither version recorded per-subgroup metrics (train with --group-by, or a "
                                  "harness policy with group_by)."))


def mastery_chart(over_time: dict[str, list[MasteryPoint]], *, level_up: float, level_down: float) -> Markup:
    timed = all(p.at is not None for pts in over_time.values() for p in pts)
    series = [Series(f"skill {skill}", [Point(p.at if timed else p.order, p.p_correct,
                                              f"{'correct' if p.correct else 'wrong'} answer")
                                        for p in pts]) for skill, pts in over_time.items()]
    return Markup(chart(series=series, ylabel="predicted P(correct)", xlabel="" if timed else "attempt",
                        xname="" if timed else "attempt", y_floor=0.0, y_ceiling=1.0,
                        thresholds=[Threshold(level_up, "level up", _GREEN), Threshold(level_down, "level down")],
                        empty="No attempt to draw yet: mastery appears after the learner's second answer."))


def policy_chart(curves: PolicyCurves) -> Markup:
    """Expected post-test score (hidden truth, the learner's grade-level items) against items
    practised, one line per policy: the last `aivo evaluate-policy` run on one learner model."""
    series = [Series(name, [Point(x, y, f"{name}: {y:.3f} after {x} items") for x, y in zip(*curve)],
                     color=(_GREEN if name == "aivo-gain" else None))
              for name, curve in curves.curves.items()]
    return Markup(chart(series=series, ylabel="post-test score", xlabel="items practised",
                        empty="No closed-loop evaluation yet: run `aivo evaluate-policy`."))
