"""`BrainConfig`: every knob of the Main Brain model and its training, validated on creation."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from aivo.config import Settings
from aivo.errors import ConfigError

ENCODERS = ("gru", "lstm")


@dataclass(frozen=True)
class BrainConfig:
    """The defaults are what `aivo train-main`, the pipeline and the scheduler train: one setting
    for every data set, chosen by cross-validation on the training learners of the three shared
    KT data sets together (benchmarks/kt_default_cv.py, table in benchmarks/RESULTS.md): residual
    evidence divided by the count, a weight average with decay 0.99, learning rate 2e-3; early
    stopping after 3 epochs or 100 optimizer steps without a validation improvement, whichever is
    longer (benchmarks/kt_stop_rule_cv.py)."""

    # --- data -------------------------------------------------------------------------
    # Histories longer than this are cut into independent chunks (the KT benchmark protocol).
    max_seq_len: int = 200
    # An interaction may carry several skills ('a;b'); only this many are embedded (averaged).
    max_skills_per_interaction: int = 4

    # --- model ------------------------------------------------------------------------
    embed_dim: int = 64
    hidden_dim: int = 128
    encoder: str = "gru"
    num_layers: int = 1
    # Width of the MLP that turns [state, target item, target skill, history features] into a logit.
    head_hidden_dim: int = 128
    dropout: float = 0.2
    # Causal "Best-LR/DAS3H-style" counts of the target item's/skill's history fed to the head.
    use_history_features: bool = True
    # Also feed the interaction's own history features into the encoder input.
    features_in_encoder: bool = True
    # Embed (item, answer) pairs on top of (skill, answer) pairs. Helps when items repeat
    # often enough to learn an answer-aware embedding per item.
    item_response_embedding: bool = False
    # Size of the additive evidence memory (0 disables it): per-(item, answer) and (skill, answer)
    # vectors summed over the history, one sum per decay (1.0 = plain sum, <1 = recent steps count more).
    evidence_dim: int = 16
    evidence_decays: tuple[float, ...] = (1.0,)
    # "free" (per item/skill and answer) or "residual" ((answer - expected) x item/skill factors).
    evidence_kind: str = "residual"
    # Scale of the sums at step t: "none", "sqrt" (/ sqrt(t + 1)) or "mean" (/ (t + prior count)).
    evidence_normalize: str = "mean"
    # Pseudo-count of the learner's smoothed running correct rate (prior: training correct rate).
    running_rate_prior_count: float = 5.0

    # --- auxiliary heads --------------------------------------------------------------
    num_difficulty_levels: int = 10
    # Pseudo-count pulling an item's error rate towards the global rate before binning into levels:
    # a rarely seen item is not put in the hardest decile because of two unlucky answers.
    difficulty_prior_count: float = 10.0
    # Loss weights of the auxiliary heads relative to the correctness loss. Small, so that they
    # regularize the shared state rather than compete with the main objective.
    difficulty_loss_weight: float = 0.1
    content_loss_weight: float = 0.1

    # --- personal part (trained per learner by clones, frozen at zero in the Main Brain) -----
    # Per-skill logit offsets in the personal part (the others are always there: global bias,
    # per-item-type offsets, a scale and a linear read-out of the state).
    personal_skill_offsets: bool = True

    # --- optimisation -----------------------------------------------------------------
    learning_rate: float = 2e-3
    weight_decay: float = 0.0
    batch_size: int = 64
    max_epochs: int = 30
    # Epochs without a validation-AUC improvement before stopping.
    patience: int = 3
    # ... and at least as many epochs as this many optimizer steps take (0: epochs only). A small
    # data set makes few steps per epoch (STATICS: 10 at batch 64): 3 epochs are 30 steps, and the
    # validation curve of the weight average has flat stretches that long (train-main stopped
    # STATICS at epoch 6, best 3; with 10 epochs' patience it went on to epoch 21, +0.008 AUC on
    # held-out training learners: benchmarks/kt_stop_rule_cv.py). Data sets of 34 or more steps
    # per epoch (ASSIST2015: 177) keep the 3 epochs.
    patience_steps: int = 100
    grad_clip_norm: float = 1.0
    # Decay of the per-step exponential moving average of the weights that is validated and kept
    # (0 = keep the raw weights). 0.99 averages over roughly the last 100 steps.
    weight_average_decay: float = 0.99
    # Train the correctness head on the first attempt of each chunk too (a cold-start prediction
    # from an empty history). Evaluation never scores it, per the KT protocol.
    train_on_first_attempt: bool = True
    # Data augmentation: from the second epoch on, cut long training histories at a random offset
    # (per learner and epoch) instead of always at multiples of max_seq_len. Evaluation keeps the
    # protocol's fixed cuts.
    random_chunk_offsets: bool = True
    # Start item biases at the log-odds of each item's smoothed training correct rate.
    init_item_bias: bool = True

    def __post_init__(self) -> None:
        positive_ints = ("max_seq_len", "max_skills_per_interaction", "embed_dim", "hidden_dim", "num_layers",
                         "head_hidden_dim", "num_difficulty_levels", "batch_size", "max_epochs", "patience")
        for name in positive_ints:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"BrainConfig.{name} must be a positive integer, got {value!r}")
        if not isinstance(self.patience_steps, int) or isinstance(self.patience_steps, bool) or self.patience_steps < 0:
            raise ValueError(f"BrainConfig.patience_steps must be a non-negative integer, got {self.patience_steps!r}")
        if self.max_seq_len < 2:
            raise ValueError(f"BrainConfig.max_seq_len must be at least 2, got {self.max_seq_len}")
        if self.num_difficulty_levels < 2:
            raise ValueError("BrainConfig.num_difficulty_levels must be at least 2")
        if self.evidence_dim < 0:
            raise ValueError(f"BrainConfig.evidence_dim must be non-negative, got {self.evidence_dim}")
        object.__setattr__(self, "evidence_decays", tuple(float(d) for d in self.evidence_decays))
        if not self.evidence_decays or any(not 0.0 < d <= 1.0 for d in self.evidence_decays):
            raise ValueError(f"BrainConfig.evidence_decays must be non-empty, each in (0, 1], "
                             f"got {self.evidence_decays}")
        if self.evidence_kind not in ("free", "residual"):
            raise ValueError(f"BrainConfig.evidence_kind must be 'free' or 'residual', got {self.evidence_kind!r}")
        if self.evidence_normalize not in ("none", "sqrt", "mean"):
            raise ValueError(f"BrainConfig.evidence_normalize must be 'none', 'sqrt' or 'mean', "
                             f"got {self.evidence_normalize!r}")
        if self.encoder not in ENCODERS:
            raise ValueError(f"BrainConfig.encoder must be one of {ENCODERS}, got {self.encoder!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"BrainConfig.dropout must be in [0, 1), got {self.dropout}")
        for name in ("learning_rate", "grad_clip_norm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"BrainConfig.{name} must be positive, got {getattr(self, name)}")
        if not 0.0 <= self.weight_average_decay < 1.0:
            raise ValueError(f"BrainConfig.weight_average_decay must be in [0, 1), got {self.weight_average_decay}")
        for name in ("weight_decay", "difficulty_loss_weight", "content_loss_weight", "difficulty_prior_count",
                     "running_rate_prior_count"):
            if getattr(self, name) < 0:
                raise ValueError(f"BrainConfig.{name} must be non-negative, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "BrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown BrainConfig field(s): {', '.join(unknown)}")
        return cls(**values)

    def replace(self, **changes: Any) -> "BrainConfig":
        return BrainConfig.from_dict({**self.to_dict(), **changes})


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
