"""Typed options for the tutor layers: generation, LoRA, clone training, batching.

Each is a dataclass that validates itself; `from_settings` builds the service defaults.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from aivo.config import Settings
from aivo.errors import DataError


@dataclass(frozen=True)
class GenerationParams:
    max_new_tokens: int = 128
    temperature: float = 0.7  # 0 = greedy (deterministic)
    top_p: float = 0.9
    repetition_penalty: float = 1.1  # >1 discourages repeating tokens (CTRL-style penalty)
    seed: int | None = None  # None: drawn from the service's seeded generator

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise DataError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise DataError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise DataError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.repetition_penalty <= 0:
            raise DataError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")

    @classmethod
    def from_settings(cls, settings: Settings) -> "GenerationParams":
        return cls(max_new_tokens=settings.max_new_tokens, temperature=settings.tutor_temperature,
                   top_p=settings.tutor_top_p)

    def override(self, **changes: object) -> "GenerationParams":
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


@dataclass(frozen=True)
class LoraSpec:
    """A learner adapter's shape. r=16, alpha=32 on q/v projections follows the seed design."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")

    def __post_init__(self) -> None:
        if self.r < 1 or self.alpha < 1:
            raise DataError(f"LoRA r and alpha must be >= 1, got r={self.r}, alpha={self.alpha}")
        if not 0 <= self.dropout < 1:
            raise DataError(f"LoRA dropout must be in [0, 1), got {self.dropout}")
        modules = tuple(m.strip() for m in self.target_modules if m.strip())
        if not modules:
            raise DataError("LoRA target_modules must name at least one module")
        object.__setattr__(self, "target_modules", modules)

    @classmethod
    def from_settings(cls, settings: Settings) -> "LoraSpec":
        return cls(r=settings.tutor_lora_r, alpha=settings.tutor_lora_alpha,
                   dropout=settings.tutor_lora_dropout,
                   target_modules=tuple(settings.tutor_lora_target_modules.split(",")))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["target_modules"] = list(self.target_modules)
        return d


@dataclass(frozen=True)
class CloneTrainingConfig:
    epochs: int = 3
    learning_rate: float = 2e-3
    batch_size: int = 4
    max_seq_len: int = 384  # tokens per example; longer examples are cut from the left
    seed: int = 0
    lora: LoraSpec = field(default_factory=LoraSpec)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.max_seq_len < 16:
            raise DataError("clone training needs epochs >= 1, batch_size >= 1 and max_seq_len >= 16")
        if self.learning_rate <= 0:
            raise DataError(f"learning_rate must be > 0, got {self.learning_rate}")

    @classmethod
    def from_settings(cls, settings: Settings) -> "CloneTrainingConfig":
        return cls(epochs=settings.tutor_clone_epochs, learning_rate=settings.tutor_clone_learning_rate,
                   seed=settings.seed, lora=LoraSpec.from_settings(settings))


@dataclass(frozen=True)
class BatchingConfig:
    max_batch_size: int = 8
    window_ms: float = 5.0  # wait this long after the first request for others to join

    def __post_init__(self) -> None:
        if self.max_batch_size < 1 or self.window_ms < 0:
            raise DataError("batching needs max_batch_size >= 1 and window_ms >= 0")

    @classmethod
    def from_settings(cls, settings: Settings) -> "BatchingConfig":
        return cls(max_batch_size=settings.tutor_max_batch_size, window_ms=settings.tutor_batch_window_ms)
