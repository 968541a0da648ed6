"""Hyperparameter search for the Main Brain with Optuna (TPE, seeded), bounded in trials and time.

Every trial trains on the training learners with early stopping on the validation learners and
is scored by validation AUC; the test learners are never looked at. The first trial is the base
configuration itself, so the search can only match or beat it on validation. Trials share the
training seed (a fair comparison), and the winning trial's trained model is kept, so the final
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
from aivo.brain.train import TrainResult, TrainingStopped, train_main_brain
from aivo.data.schema import InteractionLog

log = logging.getLogger(__name__)

Report = Callable[[str, float | None, str], None]

def default_search_space(base: BrainConfig) -> dict[str, dict[str, Any]]:
    """The searched knobs, centred on the base configuration so that the search scales with it:
    the learning rate within 3x either way (log scale), the hidden width halved, kept or doubled,
    dropout and weight decay over common values."""
    widths = sorted({max(8, base.hidden_dim // 2), base.hidden_dim, base.hidden_dim * 2})
    return {
        "learning_rate": {"type": "float", "low": base.learning_rate / 3, "high": base.learning_rate * 3,
                          "log": True},
        "hidden_dim": {"type": "categorical", "choices": widths},
        "dropout": {"type": "float", "low": 0.0, "high": 0.4},
        "weight_decay": {"type": "categorical", "choices": sorted({0.0, 1e-5, 1e-4, base.weight_decay})},
    }


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


def _base_values(config: BrainConfig, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The base config's value of each searched knob, clipped into the space (for trial 0)."""
    values = {}
    for name, spec in space.items():
        value = getattr(config, name)
        if spec["type"] == "categorical":
            if value in spec["choices"]:
                values[name] = value
        else:
            values[name] = min(max(value, spec["low"]), spec["high"])
    return values


def search_hyperparameters(*, train: InteractionLog, validation: InteractionLog, base_config: BrainConfig,
                           seed: int, trials: int, timeout_s: float,
                           space: dict[str, dict[str, Any]] | None = None,
                           should_stop: Callable[[], bool] | None = None, report: Report | None = None) -> SearchResult:
    """Run up to `trials` trials within `timeout_s` seconds. `trials=0` trains the base config once."""
    import optuna

    space = default_search_space(base_config) if space is None else space
    started = time.perf_counter()
    best: dict[str, Any] = {"auc": None, "result": None, "params": {}}
    records: list[dict[str, Any]] = []
    planned = max(trials, 1)

    def fit(params: dict[str, Any], number: int) -> float:
        config = base_config.replace(**params)
        remaining = max(1.0, timeout_s - (time.perf_counter() - started))
        if report:
            report("searching", number / planned, f"trial {number + 1}/{planned}: {params}")
        t0 = time.perf_counter()
        result = train_main_brain(train=train, validation=validation, config=config, seed=seed,
                                  time_budget_s=remaining, should_stop=should_stop)
        auc = result.validation.auc
        records.append({"number": number, "params": params, "validation_auc": auc, "best_epoch": result.best_epoch,
                        "epochs_run": len(result.history), "seconds": round(time.perf_counter() - t0, 2)})
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
        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
        study.enqueue_trial(_base_values(base_config, space))

        stopped: list[TrainingStopped] = []

        def objective(trial) -> float:
            params = {name: _suggest(trial, name, spec) for name, spec in space.items()}
            try:
                return fit(params, trial.number)
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
