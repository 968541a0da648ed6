"""Small builders shared by the registry tests."""

from __future__ import annotations

from aivo.registry import ArtifactRef, ArtifactStore, register_main_version
from aivo.registry.records import MainVersionRecord


def blob(tag: str, size: int = 256) -> bytes:
    """Distinct, deterministic content per tag."""
    seed = tag.encode()
    return (seed * (size // len(seed) + 1))[:size]


def stored(store: ArtifactStore, tag: str, size: int = 256) -> ArtifactRef:
    return store.put_bytes(blob(tag, size))


def add_version(session, store: ArtifactStore, version: str, *, clock, parent: str | None = None,
                metrics: dict | None = None) -> MainVersionRecord:
    return register_main_version(session=session, store=store, version=version,
                                 artifact=stored(store, f"main:{version}"),
                                 architecture={"model": "test", "hidden": 8},
                                 training_metrics=metrics or {"auc": 0.7}, parent_version=parent,
                                 data_hash="d" * 64, created_by="tests", clock=clock)
