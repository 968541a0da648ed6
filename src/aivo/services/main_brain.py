"""Main Brain use cases: train on the registry's interactions and register a version
(`aivo train-main`), or train on a file into a checkpoint folder and evaluate a checkpoint on a
file (`aivo train-main --data ... --out ...`, `aivo evaluate`).

Registering and loading versions is `aivo.brain.versions`; the continuous-training pipeline
(`aivo pipeline run`, scheduled training) is `aivo.services.pipeline`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aivo.brain.bundle import TrainedBrain
from aivo.brain.catalog import item_catalog
from aivo.brain.curriculum import learn_curriculum
from aivo.brain.checkpoint import load_checkpoint, save_checkpoint
from aivo.brain.config import BrainConfig, config_from_settings, load_config_file
from aivo.brain.predict import Evaluation, evaluate
from aivo.brain.train import train_main_brain
from aivo.brain.versions import load_main_brain, register_brain
from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.config import Settings
from aivo.data.readers import read_interactions
from aivo.data.schema import InteractionLog
from aivo.data.splits import split_by_learner
from aivo.errors import ConfigError, DataError
from aivo.registry import MainVersionRecord, Registry, get_active_main_version, load_interactions

log = logging.getLogger(__name__)

__all__ = ["TrainMainReport", "TrainReport", "brain_config", "evaluate_from_files", "evaluate_on", "load_main_brain",
           "train_main_from_file", "train_main_version"]


def brain_config(settings: Settings, *, config_file: Path | None = None, **overrides: Any) -> BrainConfig:
    """The Main Brain configuration a command trains with: the settings' defaults, then the
    fields of `config_file` (a JSON object), then `overrides` (None keeps the value before)."""
    values = load_config_file(config_file) if config_file else {}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return config_from_settings(settings, **values)


@dataclass
class TrainMainReport:
    version: MainVersionRecord
    promoted: bool
    promotion_reason: str
    data_hash: str
    split: dict[str, dict[str, int]]
    best_epoch: int
    epochs_run: int
    train_seconds: float
    validation: dict
    test: dict
    active_before: str | None
    active_test: dict | None = None  # the previously active version on the same test learners
    details: dict = field(default_factory=dict)


def evaluate_on(*, brain: TrainedBrain, log: InteractionLog, group_by: Sequence[str] = ()) -> Evaluation:
    return evaluate(brain=brain, log=log, group_by=[c for c in group_by if c in log.frame.columns])


def train_main_version(*, registry: Registry, settings: Settings, config: BrainConfig, seed: int,
                       log: InteractionLog | None = None, promote: str = "if-better",
                       fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), group_by: Sequence[str] = (),
                       actor: str, progress: bool = False, clock: Clock = SYSTEM_CLOCK) -> TrainMainReport:
    """Train on `log` (default: every interaction in the registry), split 80/10/10 by learner,
    evaluate on the test learners and register the result as a new main version.

    promote: "always", "never", or "if-better" (promote when there is no active version, or when
    the new version's test AUC is higher than the active version's on the same test learners).
    The continuous-training pipeline applies the stricter IMPROVEMENT_THRESHOLD gate."""
    if promote not in ("always", "never", "if-better"):
        raise ValueError(f"promote must be always, never or if-better, got {promote!r}")
    if log is None:
        with registry.session(read_only=True) as session:
            log = load_interactions(session=session)
        if log.num_interactions == 0:
            raise DataError("the registry holds no interactions: import some with `aivo data import FILE`")
    split = split_by_learner(log, fractions=fractions, seed=seed)
    result = train_main_brain(train=split.train, validation=split.validation, config=config, seed=seed,
                              progress=progress)
    brain = result.brain
    test = evaluate_on(brain=brain, log=split.test, group_by=group_by)
    with registry.session(read_only=True) as session:
        active = get_active_main_version(session=session)
    active_test = None
    if active is not None:
        active_test = evaluate_on(brain=load_main_brain(registry=registry).brain, log=split.test,
                                  group_by=group_by).as_dict()
    new_auc = test.metrics.auc or 0.0
    if promote == "always":
        do_promote, why = True, "promotion requested"
    elif promote == "never":
        do_promote, why = False, "promotion not requested"
    elif active is None:
        do_promote, why = True, "first Main Brain version"
    else:
        old_auc = active_test["metrics"]["auc"] or 0.0
        do_promote = new_auc > old_auc
        why = (f"test AUC {new_auc:.4f} vs active {active.version} {old_auc:.4f} on the same test learners")
    brain.info.update({"data_hash": log.data_hash(), "split_seed": seed, "split_fractions": list(fractions),
                       "split": split.sizes(), "item_catalog": item_catalog(split.train),
                       # the teaching order the served policies read (aivo.brain.curriculum)
                       "curriculum": learn_curriculum(split.train, bkt=False).to_dict(),
                       "history": [asdict(epoch) for epoch in result.history],
                       "test_metrics": test.metrics.as_dict()})
    metrics = {"validation": result.validation.as_dict(), "test": test.as_dict(), "best_epoch": result.best_epoch,
               "train_seconds": round(result.seconds, 2),
               "history": [asdict(epoch) for epoch in result.history]}  # the learning curve, for the dashboard
    record = register_brain(registry=registry, brain=brain, training_metrics=metrics, data_hash=log.data_hash(),
                            parent_version=active.version if active else None, promote=do_promote, actor=actor,
                            reason=why, clock=clock)
    return TrainMainReport(version=record, promoted=do_promote, promotion_reason=why, data_hash=log.data_hash(),
                           split=split.sizes(), best_epoch=result.best_epoch, epochs_run=len(result.history),
                           train_seconds=round(result.seconds, 2), validation=result.validation.as_dict(),
                           test=test.as_dict(), active_before=active.version if active else None,
                           active_test=active_test)


@dataclass
class TrainReport:
    checkpoint: str
    seed: int
    data_hash: str
    split: dict[str, dict[str, int]]
    best_epoch: int
    epochs_run: int
    train_seconds: float
    validation: dict
    test: dict  # Evaluation.as_dict() on the held-out test learners
    num_parameters: dict[str, int]


def train_main_from_file(*, data: Path, out: Path, config: BrainConfig, seed: int, data_format: str = "auto",
                         fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), group_by: Sequence[str] = (),
                         progress: bool = False) -> TrainReport:
    """Read `data`, split it by learner (train/validation/test), train with early stopping on
    validation, evaluate on test, and write a checkpoint folder at `out`."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder; --out names the checkpoint folder to write")
    interactions = read_interactions(data, format=data_format)
    group_by = _present(group_by, interactions.frame.columns)  # before training, not after
    split = split_by_learner(interactions, fractions=fractions, seed=seed)
    result = train_main_brain(train=split.train, validation=split.validation, config=config, seed=seed,
                              progress=progress)
    brain = result.brain
    test = evaluate(brain=brain, log=split.test, group_by=group_by)
    brain.info.update({"data_hash": interactions.data_hash(), "data_source": str(data), "split_seed": seed,
                       "split_fractions": list(fractions), "split": split.sizes(),
                       "test_metrics": test.metrics.as_dict(),
                       "test_oracle": test.oracle.as_dict() if test.oracle is not None else None})
    save_checkpoint(brain, out)
    log.info("Main Brain saved to %s (test AUC %s)", out, test.metrics.auc)
    model = brain.model
    return TrainReport(checkpoint=str(out), seed=seed, data_hash=interactions.data_hash(), split=split.sizes(),
                       best_epoch=result.best_epoch, epochs_run=len(result.history),
                       train_seconds=round(result.seconds, 2), validation=result.validation.as_dict(),
                       test=test.as_dict(),
                       num_parameters={"shared": model.num_parameters("embed", "encoder", "head"),
                                       "personal": model.num_parameters("personal")})


def evaluate_from_files(*, model_dir: Path, data: Path, group_by: Sequence[str] = (),
                        data_format: str = "auto") -> Evaluation:
    brain = load_checkpoint(model_dir)
    interactions = read_interactions(data, format=data_format)
    return evaluate(brain=brain, log=interactions, group_by=list(group_by))


def _present(columns: Sequence[str], available) -> list[str]:
    missing = [c for c in columns if c not in available]
    if missing:
        raise DataError(f"cannot group by missing column(s): {', '.join(missing)}")
    return list(columns)
