"""Main Brain checkpoints: safetensors weights plus JSON metadata that rebuilds everything.

In memory, `to_state` / `from_state` give (tensors, metadata) for stores that keep their own files
(the registry's content-addressed artifact store). On disk, a checkpoint folder holds
`main_brain.safetensors` (weights; the metadata is also embedded in its header, so the file alone
is a complete artifact) and `main_brain.json` (the same metadata, for people and tools).
`to_bytes` / `from_bytes` give the single self-contained safetensors blob.

The metadata is tagged with `kind` and `format_version`; loading refuses anything else.
"""

from __future__ import annotations

import json
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load as load_bytes
from safetensors.torch import load_file, save, save_file

import aivo
from aivo.brain.bundle import TrainedBrain, build_model
from aivo.brain.config import BrainConfig
from aivo.brain.labels import LabelTables
from aivo.brain.model import PARAMETER_GROUPS
from aivo.brain.vocab import BrainVocab
from aivo.errors import IntegrityError, NotFoundError
from aivo.utils import durable_file

KIND = "aivo.main_brain"
FORMAT_VERSION = 1
WEIGHTS_FILE = "main_brain.safetensors"
METADATA_FILE = "main_brain.json"
_HEADER_KEY = "aivo_metadata"


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the running code when it runs from a git checkout, else None."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def to_state(brain: TrainedBrain, *, extra: dict[str, Any] | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors keyed by parameter name, JSON-able metadata) that `from_state` turns back into `brain`."""
    model = brain.model
    tensors = {name: value.detach().cpu().contiguous().clone() for name, value in model.state_dict().items()}
    metadata = {
        "kind": KIND,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "sizes": dict(model.sizes),
        "vocab": brain.vocab.to_json(),
        "tables": brain.tables.to_json(),
        "info": dict(brain.info),
        "parameter_groups": {group: model.parameter_names(group) for group in PARAMETER_GROUPS},
        "aivo_version": aivo.__version__,
        "git_commit": git_commit(),
    }
    if extra:
        metadata["extra"] = extra
    return tensors, json.loads(json.dumps(metadata))


def check_metadata(metadata: dict, *, source: str = "<memory>") -> None:
    kind = metadata.get("kind")
    if kind != KIND:
        raise IntegrityError(f"{source}: not a Main Brain checkpoint (kind {kind!r}, expected {KIND!r})")
    version = metadata.get("format_version")
    if version != FORMAT_VERSION:
        raise IntegrityError(f"{source}: Main Brain checkpoint format {version!r} is not supported by this "
                             f"aivo ({aivo.__version__}, reads format {FORMAT_VERSION}); retrain or upgrade")


def from_state(tensors: dict[str, torch.Tensor], metadata: dict, *, source: str = "<memory>") -> TrainedBrain:
    check_metadata(metadata, source=source)
    config = BrainConfig.from_dict(metadata["config"])
    vocab = BrainVocab.from_json(metadata["vocab"])
    model = build_model(config, vocab)
    if model.sizes != metadata["sizes"]:
        raise IntegrityError(f"{source}: vocabulary sizes {model.sizes} do not match the recorded {metadata['sizes']}")
    expected = set(model.state_dict())
    if set(tensors) != expected:
        missing, unexpected = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
        raise IntegrityError(f"{source}: weights do not fit the model (missing {missing[:5]}, "
                             f"unexpected {unexpected[:5]})")
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise IntegrityError(f"{source}: weights do not fit the model: {exc}") from None
    model.eval()
    return TrainedBrain(model=model, vocab=vocab, tables=LabelTables.from_json(metadata["tables"]),
                        info=dict(metadata.get("info", {})))


def to_bytes(brain: TrainedBrain, *, extra: dict[str, Any] | None = None) -> bytes:
    """One self-contained safetensors blob (metadata in its header)."""
    tensors, metadata = to_state(brain, extra=extra)
    return save(tensors, metadata={_HEADER_KEY: json.dumps(metadata, sort_keys=True)})


def from_bytes(data: bytes, *, source: str = "<bytes>") -> TrainedBrain:
    try:
        tensors = load_bytes(data)
        metadata = _header_metadata_from_bytes(data)
    except (SafetensorError, ValueError) as exc:
        raise IntegrityError(f"{source}: not a readable safetensors file ({exc})") from None
    return from_state(tensors, metadata, source=source)


def save_checkpoint(brain: TrainedBrain, directory: str | Path, *, extra: dict[str, Any] | None = None) -> Path:
    """Write the checkpoint folder (created if needed); files are replaced atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors, metadata = to_state(brain, extra=extra)
    text = json.dumps(metadata, sort_keys=True)
    with durable_file(directory / WEIGHTS_FILE, create_mode=0o600) as path:
        save_file(tensors, str(path), metadata={_HEADER_KEY: text})
    with durable_file(directory / METADATA_FILE, create_mode=0o600) as path:
        path.write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    return directory


def load_checkpoint(directory: str | Path) -> TrainedBrain:
    directory = Path(directory)
    weights = directory / WEIGHTS_FILE
    if not weights.exists():
        raise NotFoundError(f"{directory}: no Main Brain checkpoint here (missing {WEIGHTS_FILE})")
    try:
        tensors = load_file(str(weights))
        metadata = _header_metadata(weights)
    except (SafetensorError, ValueError, OSError) as exc:
        raise IntegrityError(f"{weights}: not a readable safetensors file ({exc})") from None
    return from_state(tensors, metadata, source=str(weights))


def read_metadata(directory: str | Path) -> dict:
    """The metadata of a checkpoint folder without loading its weights."""
    path = Path(directory) / METADATA_FILE
    if not path.exists():
        raise NotFoundError(f"{directory}: no Main Brain checkpoint here (missing {METADATA_FILE})")
    metadata = json.loads(path.read_text())
    check_metadata(metadata, source=str(path))
    return metadata


def _header_metadata(path: Path) -> dict:
    with safe_open(str(path), framework="pt") as handle:
        header = handle.metadata() or {}
    if _HEADER_KEY not in header:
        raise ValueError("no aivo metadata in the safetensors header")
    return json.loads(header[_HEADER_KEY])


def _header_metadata_from_bytes(data: bytes) -> dict:
    if len(data) < 8:
        raise ValueError("too short")
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + size])
    meta = header.get("__metadata__") or {}
    if _HEADER_KEY not in meta:
        raise ValueError("no aivo metadata in the safetensors header")
    return json.loads(meta[_HEADER_KEY])


