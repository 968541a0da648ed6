"""Main Brain versions in the registry: register a trained brain as a version, load the active
one (or a named one).

`load_main_brain` keeps recently loaded brains in a small in-process cache keyed by the
artifact's sha256 (an artifact never changes, so the cache needs no invalidation: promotion
simply changes which digest is active). The artifact's hash is verified when first loaded.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from aivo.brain.bundle import TrainedBrain
from aivo.brain.checkpoint import from_state, to_state
from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.errors import NotFoundError
from aivo.registry import (
    MainVersionRecord,
    Registry,
    get_active_main_version,
    get_main_version,
    next_main_version_name,
    promote_main_version,
    register_main_version,
)

log = logging.getLogger(__name__)
_CACHE_SIZE = 4
_cache: "OrderedDict[str, TrainedBrain]" = OrderedDict()
_cache_lock = threading.Lock()


@dataclass(frozen=True)
class LoadedBrain:
    version: MainVersionRecord
    brain: TrainedBrain


def architecture_of(brain: TrainedBrain) -> dict[str, Any]:
    model = brain.model
    return {"kind": "main_brain", "config": brain.config.to_dict(), "sizes": dict(model.sizes),
            "num_parameters": {"shared": model.num_parameters("embed", "encoder", "head"),
                               "personal": model.num_parameters("personal")}}


def register_brain(*, registry: Registry, brain: TrainedBrain, training_metrics: dict[str, Any],
                   data_hash: str | None, parent_version: str | None = None, promote: bool = False,
                   actor: str, reason: str, version: str | None = None, details: dict[str, Any] | None = None,
                   clock: Clock = SYSTEM_CLOCK) -> MainVersionRecord:
    """Store the brain's weights (durably, content-addressed), then register the version row,
    and promote it in the same transaction when asked. `reason` (why it is or is not promoted)
    is kept in the version's details as `decision`."""
    tensors, metadata = to_state(brain)
    artifact = registry.store.put_tensors(tensors, metadata=metadata)
    with registry.session() as session:
        name = version or next_main_version_name(session=session)
        record = register_main_version(session=session, store=registry.store, version=name, artifact=artifact,
                                       architecture=architecture_of(brain), training_metrics=training_metrics,
                                       data_hash=data_hash, parent_version=parent_version,
                                       details={**(details or {}), "decision": reason}, created_by=actor,
                                       clock=clock)
        if promote:
            record = promote_main_version(session=session, version=name, actor=actor, reason=reason, clock=clock)
    with _cache_lock:
        _remember(artifact.sha256, brain)
    log.info("registered Main Brain %s (%s)%s", record.version, artifact.sha256[:12],
             " and promoted it" if promote else "")
    return record


def _remember(digest: str, brain: TrainedBrain) -> None:
    _cache[digest] = brain
    _cache.move_to_end(digest)
    while len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)


def load_main_brain(*, registry: Registry, version: str | None = None) -> LoadedBrain:
    """The active Main Brain (or `version`), loaded from its verified artifact."""
    with registry.session(read_only=True) as session:
        record = get_main_version(session=session, version=version) if version \
            else get_active_main_version(session=session)
    if record is None:
        raise NotFoundError("there is no active Main Brain yet: train one on the registry's interactions with "
                            "`aivo train-main` (or POST /v1/scheduler/train-main-brain)")
    with _cache_lock:
        brain = _cache.get(record.artifact_sha256)
        if brain is not None:
            _cache.move_to_end(record.artifact_sha256)
            return LoadedBrain(record, brain)
    tensors, metadata = registry.store.load_tensors(record.artifact_sha256)
    brain = from_state(tensors, metadata, source=f"main version {record.version}")
    with _cache_lock:
        _remember(record.artifact_sha256, brain)
    return LoadedBrain(record, brain)


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()
