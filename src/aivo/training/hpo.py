"""Hyperparameter search for the Main Brain with Optuna (TPE, seeded), bounded in trials and time.

Every trial trains on the training learners with early stopping on the validation learners and
is scored by validation AUC; the test learners are never looked at. The first trial is the base
configuration itself, so the search can only match or beat it on validation. Next come a few
fixed alternatives (the *portfolio*: settings that won on some kinds of data in the
cross-validation that chose the defaults, benchmarks/kt_default_cv.py), then TPE samples the
space. A trial whose validation AUC falls behind the median of the finished trials at the same
epoch is pruned (after a warm-up), so that a hopeless trial does not eat the budget. Trials share
the training seed (a fair comparison), and the winning trial's trained model is kept, so the final
model needs no second training run (training is deterministic for a given seed and config).

The time bound is shared: each trial gets what is left of `timeout_s` as its own time budget,
and Optuna starts no trial once the budget is spent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aivo.brain.config import BrainConfig
from aivo.brain.train import EpochRecord, TrainResult, TrainingStopped, train_main_brain
from aivo.data.schema import InteractionLog

log = logging.getLogger(__name__)

Report = Callable[..., None]  # (stage, fraction, message, **figures): aivo.training.context.JobContext.report

EVIDENCE_NORMALIZATIONS = ("none", "sqrt", "mean")


def default_search_space(base: BrainConfig) -> dict[str, dict[str, Any]]:
    """The searched knobs, centred on the base configuration so that the search scales with it:
    the learning rate within 3x either way (log scale); how the evidence sums are scaled (the
    setting that differed most between data sets in the cross-validation); the weight average's
    decay; the batch size quartered, halved, kept or doubled (small data wants more steps per
    epoch); the
    hidden width halved, kept or doubled; dropout and weight decay over common values."""
    widths = sorted({max(8, base.hidden_dim // 2), base.hidden_dim, base.hidden_dim * 2})
    batches = sorted({max(8, base.batch_size // 4), max(8, base.batch_size // 2), base.batch_size,
                      base.batch_size * 2})
    return {
        "learning_rate": {"type": "float", "low": base.learning_rate / 3, "high": base.learning_rate * 3,
                          "log": True},
        "evidence_normalize": {"type": "categorical", "choices": list(EVIDENCE_NORMALIZATIONS)},
        "weight_average_decay": {"type": "categorical",
                                 "choices": sorted({0.0, 0.99, 0.995, base.weight_average_decay})},
        "batch_size": {"type": "categorical", "choices": batches},
        "hidden_dim": {"type": "categorical", "choices": widths},
        "dropout": {"type": "float", "low": 0.0, "high": 0.4},
        "weight_decay": {"type": "categorical", "choices": sorted({0.0, 1e-5, 1e-4, base.weight_decay})},
    }


def default_portfolio(base: BrainConfig) -> list[dict[str, Any]]:
    """Alternatives tried right after the base config, as changes to it (the other knobs keep the
    base's values), most useful first: what the per-data-set plans of benchmarks/kt_configs.py
    changed from the shared setting where it is not the best one (benchmarks/RESULTS.md, "Main
    Brain: the default settings"):

    * plain evidence sums at half the learning rate: data where every learner answers the same
      few items (synthetic-5), where the sums act as a logistic regression on all earlier answers;
    * batches a quarter the size with a slower weight average: small data (STATICS: 229 learners
      give about ten batches of 64 per epoch)."""
    return [
        {"evidence_normalize": "none", "learning_rate": base.learning_rate / 2},
        {"batch_size": max(8, base.batch_size // 4), "weight_average_decay": 0.995},
    ]


@dataclass
class SearchResult:
    best_params: dict[str, Any]
    best_validation_auc: float | None
    best: TrainResult
    config: BrainConfig  # the base config with the best parameters applied
    trials: list[dict[str, Any]] = field(default_factory=list)  # number, params, value, seconds, state
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {"num_trials": len(self.trials), "best_params": self.best_params,
                "best_validation_auc": self.best_validation_auc, "seconds": round(self.seconds, 2),
                "trials": self.trials}


def _suggest(trial, name: str, spec: dict[str, Any]) -> Any:
    if spec["type"] == "float":
        return trial.suggest_float(name, spec["low"], spec["high"], log=spec.get("log", False))
    if spec["type"] == "int":
        return trial.suggest_int(name, spec["low"], spec["high"])
    return trial.suggest_categorical(name, spec["choices"])


def _in_space(name: str, value: Any, spec: dict[str, Any]) -> Any:
    """`value` as a point of the space: clipped into a range; None when a category does not list it."""
    if spec["type"] == "categorical":
        return value if value in spec["choices"] else None
    return min(max(value, spec["low"]), spec["high"])


def _base_values(config: BrainConfig, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The base config's value of each searched knob, clipped into the space (for trial 0)."""
    values = {name: _in_space(name, getattr(config, name), spec) for name, spec in space.items()}
    return {name: value for name, value in values.items() if value is not None}


def _portfolio_trials(base: BrainConfig, space: dict[str, dict[str, Any]],
                      portfolio: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Full points of the space for the portfolio entries (base values elsewhere); entries that
    name a knob outside the space, fall outside it or repeat an earlier trial are dropped."""
    base_point = _base_values(base, space)
    seen, out = [base_point], []
    for changes in portfolio:
        if any(name not in space for name in changes):
            log.warning("portfolio entry %s names a knob outside the search space; skipped", changes)
            continue
        point = dict(base_point)
        for name, value in changes.items():
            point[name] = _in_space(name, value, space[name])
        if any(v is None for v in point.values()) or len(point) < len(base_point) or point in seen:
            continue
        seen.append(point)
        out.append(point)
    return out


def search_hyperparameters(*, train: InteractionLog, validation: InteractionLog, base_config: BrainConfig,
                           seed: int, trials: int, timeout_s: float,
                           space: dict[str, dict[str, Any]] | None = None,
                           portfolio: list[dict[str, Any]] | None = None, prune_after_epochs: int | None = 5,
                           should_stop: Callable[[], bool] | None = None, report: Report | None = None) -> SearchResult:
    """Run up to `trials` trials within `timeout_s` seconds. `trials=0` trains the base config once.

    `portfolio` (default `default_portfolio(base_config)`) lists changes to the base config tried
    right after it; `prune_after_epochs` (None: never) is the warm-up after which a trial below the
    median of the finished trials at the same epoch is pruned (from the third trial on)."""
    # start-up: Optuna loads only when a search runs
    import optuna

    space = default_search_space(base_config) if space is None else space
    portfolio = default_portfolio(base_config) if portfolio is None else portfolio
    started = time.perf_counter()
    best: dict[str, Any] = {"auc": None, "result": None, "params": {}}
    records: list[dict[str, Any]] = []
    planned = max(trials, 1)

    def fit(params: dict[str, Any], number: int, trial=None) -> float:
        config = base_config.replace(**params)
        remaining = max(1.0, timeout_s - (time.perf_counter() - started))
        if report:
            report("searching", number / planned, f"trial {number + 1}/{planned}: {params}")
        t0 = time.perf_counter()
        curve: list[float | None] = []

        def on_epoch(record: EpochRecord) -> None:
            curve.append(record.validation_auc)
            if report:
                done = min(record.epoch / max(config.max_epochs, 1), 1.0)
                auc = "n/a" if record.validation_auc is None else f"{record.validation_auc:.4f}"
                report("searching", (number + done) / planned,
                       f"trial {number + 1}/{planned}, epoch {record.epoch}: validation AUC {auc}",
                       trial=number + 1, trials=planned, epoch=record.epoch, max_epochs=config.max_epochs,
                       validation_auc=record.validation_auc, train_loss=round(record.train_loss, 6))
            if trial is None or record.validation_auc is None:
                return
            trial.report(record.validation_auc, record.epoch)
            if trial.should_prune():
                records.append({"number": number, "params": params, "validation_auc": max(filter(None, curve)),
                                "best_epoch": None, "epochs_run": record.epoch, "state": "pruned",
                                "seconds": round(time.perf_counter() - t0, 2)})
                log.info("trial %d: %s pruned after epoch %d (validation AUC %.4f)", number, params, record.epoch,
                         record.validation_auc)
                raise optuna.TrialPruned()

        result = train_main_brain(train=train, validation=validation, config=config, seed=seed,
                                  time_budget_s=remaining, should_stop=should_stop, on_epoch=on_epoch)
        auc = result.validation.auc
        records.append({"number": number, "params": params, "validation_auc": auc, "best_epoch": result.best_epoch,
                        "epochs_run": len(result.history), "state": "complete",
                        "seconds": round(time.perf_counter() - t0, 2)})
        if auc is not None and (best["auc"] is None or auc > best["auc"]):
            best.update(auc=auc, result=result, params=params)
        elif best["result"] is None:
            best.update(result=result, params=params)
        log.info("trial %d: %s -> validation AUC %s", number, params, auc)
        return auc if auc is not None else 0.0

    if trials <= 0:
        fit({}, 0)
    else:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        pruner = (optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=prune_after_epochs)
                  if prune_after_epochs is not None else optuna.pruners.NopPruner())
        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed),
                                    pruner=pruner)
        study.enqueue_trial(_base_values(base_config, space))
        for point in _portfolio_trials(base_config, space, portfolio):
            study.enqueue_trial(point)

        stopped: list[TrainingStopped] = []

        def objective(trial) -> float:
            params = {name: _suggest(trial, name, spec) for name, spec in space.items()}
            try:
                return fit(params, trial.number, trial)
            except TrainingStopped as exc:  # end the study quietly, then re-raise to the caller below
                stopped.append(exc)
                study.stop()
                raise optuna.TrialPruned() from None

        study.optimize(objective, n_trials=trials, timeout=timeout_s, catch=(), gc_after_trial=False)
        if stopped:
            raise stopped[0]
    if best["result"] is None:  # pragma: no cover - fit always stores a result or raises
        raise TrainingStopped("no trial finished")
    return SearchResult(best_params=best["params"], best_validation_auc=best["auc"], best=best["result"],
                        config=base_config.replace(**best["params"]), trials=records,
                        seconds=time.perf_counter() - started)
