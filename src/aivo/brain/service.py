"""Service functions behind `aivo train-main` and `aivo evaluate`: files in, checkpoint/report out."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from aivo.brain.checkpoint import load_checkpoint, save_checkpoint
from aivo.brain.config import BrainConfig
from aivo.brain.predict import Evaluation, evaluate
from aivo.brain.train import train_main_brain
from aivo.config import Settings
from aivo.data.readers import read_interactions
from aivo.data.splits import split_by_learner
from aivo.errors import ConfigError, DataError

log = logging.getLogger(__name__)


def config_from_settings(settings: Settings, **overrides: Any) -> BrainConfig:
    """A BrainConfig whose training defaults come from the service settings (AIVO_* variables)."""
    values: dict[str, Any] = {
        "max_seq_len": settings.max_seq_len, "learning_rate": settings.learning_rate,
        "batch_size": settings.batch_size, "max_epochs": settings.max_epochs,
        "patience": settings.early_stopping_patience,
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return BrainConfig(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid Main Brain configuration: {exc}") from None


def load_config_file(path: Path) -> dict[str, Any]:
    """BrainConfig fields from a JSON file (a user's file: errors are theirs, with the file named)."""
    try:
        values = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a JSON object of BrainConfig fields")
    return values


def apply_threads(settings: Settings) -> None:
    if settings.num_threads > 0:
        torch.set_num_threads(settings.num_threads)


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
