"""Learner updates: what a learner sends to aggregation, and the checks that reject bad ones.

An update is the change local training made to the aggregated (shared, unfrozen) parameters,
keyed by parameter name, built against one main version. `UpdateSpec` describes what every
update of a round must look like (names, shapes, dtype, main version); `check_update` says why
an update does not fit, and `UpdateSpec.flatten` turns a good one into one float64 vector.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch

from aivo.errors import AivoError
from aivo.utils import read_ahead

UPDATE_KIND = "aivo.learner_update"
UPDATE_FORMAT_VERSION = 1
UPDATE_DTYPE = torch.float32


@dataclass(frozen=True)
class LearnerUpdate:
    learner_id: str  # pseudonym
    tensors: Mapping[str, torch.Tensor]  # parameter name -> delta (same shape as the parameter)
    main_version: str  # the version local training started from
    num_examples: int  # interactions trained on
    score: float | None = None  # for the "weighted" strategy
    session_id: int | None = None  # the training session that produced it


class RejectedUpdate(NamedTuple):
    learner_id: str
    session_id: int | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return self._asdict()


@dataclass(frozen=True)
class UpdateSpec:
    """Names, shapes and dtype of the aggregated parameters of `main_version` (in order)."""

    main_version: str
    shapes: Mapping[str, tuple[int, ...]]
    dtype: torch.dtype = UPDATE_DTYPE
    _sizes: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.shapes:
            raise ValueError("an update spec needs at least one parameter")
        object.__setattr__(self, "shapes", {k: tuple(int(d) for d in v) for k, v in self.shapes.items()})
        object.__setattr__(self, "_sizes", tuple(int(np.prod(s)) for s in self.shapes.values()))

    @classmethod
    def from_tensors(cls, *, main_version: str, tensors: Mapping[str, torch.Tensor]) -> "UpdateSpec":
        return cls(main_version=main_version, shapes={name: tuple(t.shape) for name, t in tensors.items()})

    @property
    def numel(self) -> int:
        return int(sum(self._sizes))

    @property
    def names(self) -> list[str]:
        return list(self.shapes)

    def flatten(self, tensors: Mapping[str, torch.Tensor]) -> np.ndarray:
        """(numel,) float64 vector in spec order (call `check_update` first): one copy, converted
        while concatenating."""
        arrays = [tensors[name].detach().cpu().reshape(-1).numpy() for name in self.shapes]
        return np.concatenate(arrays, dtype=np.float64)

    def unflatten(self, vector: np.ndarray) -> dict[str, torch.Tensor]:
        if vector.shape != (self.numel,):
            raise ValueError(f"expected a vector of {self.numel} values, got shape {vector.shape}")
        out, start = {}, 0
        for (name, shape), size in zip(self.shapes.items(), self._sizes):
            out[name] = torch.from_numpy(np.ascontiguousarray(vector[start:start + size])).reshape(shape).to(self.dtype)
            start += size
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"main_version": self.main_version, "shapes": {k: list(v) for k, v in self.shapes.items()},
                "dtype": str(self.dtype).removeprefix("torch.")}


def check_update(update: LearnerUpdate, spec: UpdateSpec, *, values: bool = True) -> str | None:
    """Why `update` cannot be aggregated under `spec`, or None when it can. With `values=False`
    only the structure is checked (version, names, dtypes, shapes, example count); the caller
    then checks finiteness itself (aggregation does it on the flattened vector's norm, which is
    finite exactly when every value is)."""
    if update.main_version != spec.main_version:
        return f"built against main version {update.main_version!r}, not {spec.main_version!r}"
    tensors = update.tensors
    names, expected = set(tensors), set(spec.shapes)
    if names != expected:
        missing, extra = sorted(expected - names), sorted(names - expected)
        return f"parameters do not match (missing {missing[:3]}, unexpected {extra[:3]})"
    for name, shape in spec.shapes.items():
        tensor = tensors[name]
        if not isinstance(tensor, torch.Tensor):
            return f"{name}: not a tensor"
        if tensor.dtype != spec.dtype:
            return f"{name}: dtype {str(tensor.dtype).removeprefix('torch.')}, expected " \
                   f"{str(spec.dtype).removeprefix('torch.')}"
        if tensor.shape != shape:
            return f"{name}: shape {tuple(tensor.shape)}, expected {shape}"
        if values and not bool(torch.isfinite(tensor).all()):
            return f"{name}: contains NaN or Inf values"
    if update.num_examples < 0:
        return f"negative number of examples ({update.num_examples})"
    return None


def update_metadata(*, main_version: str, num_examples: int, extra: Mapping[str, Any] | None = None) -> dict:
    """Metadata stored with an update artifact (no learner identifier: the row holds that)."""
    return {"kind": UPDATE_KIND, "format_version": UPDATE_FORMAT_VERSION, "main_version": main_version,
            "num_examples": int(num_examples), **dict(extra or {})}


def stream_updates(store, entries, scores: dict, failures: list[RejectedUpdate], *,
                   read_ahead_depth: int = 8) -> Iterator[LearnerUpdate]:
    """Load each sampled update from the store (hash-verified), in order. Reading and hashing
    run a few artifacts ahead in two threads (they release the GIL); memory stays bounded by
    `read_ahead_depth` updates. `entries` carry learner_id, training_session_id, samples and
    update_artifact_sha256 (an `EligibleLearner`); unreadable ones are added to `failures`."""
    def load(entry):
        try:
            return entry, *store.load_tensors(entry.update_artifact_sha256)
        except AivoError as exc:
            return entry, exc, None

    for entry, tensors, metadata in read_ahead(load, entries, depth=read_ahead_depth):
        if isinstance(tensors, AivoError):
            failures.append(RejectedUpdate(entry.learner_id, entry.training_session_id,
                                           f"unreadable update: {tensors}"))
            continue
        if metadata.get("kind") != UPDATE_KIND:
            failures.append(RejectedUpdate(entry.learner_id, entry.training_session_id,
                                           f"not a learner update (kind {metadata.get('kind')!r})"))
            continue
        yield LearnerUpdate(learner_id=entry.learner_id, tensors=tensors,
                            main_version=str(metadata.get("main_version")),
                            num_examples=int(metadata.get("num_examples", entry.samples)),
                            score=scores.get(entry.training_session_id), session_id=entry.training_session_id)
