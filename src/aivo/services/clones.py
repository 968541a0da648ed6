"""Clone use cases: give learners a personal model on top of the active Main Brain
(`aivo clone LEARNER`, `aivo clone --all`, a learner's baseline assessment), and compare a clone
with its main version (`aivo clone compare LEARNER`).

Provisioning costs one database row per learner: every fresh clone of a version shares one
artifact (`aivo.personalization.clone.fresh_artifact`). Fresh clones are `pending` (identical to
the main model) until their first local training (`aivo.services.local_training`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from aivo.brain.versions import load_main_brain
from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.config import Settings
from aivo.errors import ConflictError
from aivo.personalization.clone import (
    KIND,
    LayerDifference,
    fresh_artifact,
    layer_differences,
    load_clone,
    parameter_counts,
)
from aivo.personalization.parts import partition_parameters
from aivo.registry import (
    ArtifactRef,
    LearnerModelRecord,
    Registry,
    get_active_main_version,
    register_learner_model,
    update_learner_model,
)
from aivo.registry.tables import DEFAULT_TENANT

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CloneResult:
    model: LearnerModelRecord
    artifact: ArtifactRef
    parameters: dict[str, int]  # personal / aggregated / frozen / trainable counts
    created: bool  # False when an existing clone was reset

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model.to_dict(), "artifact": {"sha256": self.artifact.sha256,
                                                            "size": self.artifact.size},
                "parameters": self.parameters, "created": self.created}


@dataclass(frozen=True)
class ProvisionResult:
    main_version: str
    created: int
    existing: int
    seconds: float
    artifact: ArtifactRef
    learners_per_second: float

    def to_dict(self) -> dict[str, Any]:
        return {"main_version": self.main_version, "created": self.created, "existing": self.existing,
                "seconds": round(self.seconds, 3), "learners_per_second": round(self.learners_per_second, 1),
                "artifact": {"sha256": self.artifact.sha256, "size": self.artifact.size}}


@dataclass(frozen=True)
class CloneComparison:
    learner_id: str
    status: str
    source_version: str
    active_version: str | None
    parameters: dict[str, int]
    stored_bytes: int | None
    layers: list[LayerDifference] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)



def clone_learner(*, registry: Registry, settings: Settings, learner_id: str, tenant: str = DEFAULT_TENANT,
                  reset: bool = False, clock: Clock = SYSTEM_CLOCK) -> CloneResult:
    """Clone the active Main Brain for the learner (pseudonym). A learner has one clone: a
    second clone is a conflict unless `reset`, which restarts it from the active version
    (its training history is kept)."""
    loaded = load_main_brain(registry=registry)
    partition = partition_parameters(loaded.brain.model, frozen_prefixes=settings.freeze_layers)
    artifact = fresh_artifact(registry, loaded)
    details = {"partition": partition.to_dict()}
    with registry.session() as session:
        try:
            model = register_learner_model(session=session, store=registry.store, learner_id=learner_id,
                                           source_version=loaded.version.version, artifact=artifact, kind=KIND,
                                           status="pending", details=details, tenant=tenant, clock=clock)
            created = True
        except ConflictError:
            if not reset:
                raise ConflictError(f"learner {learner_id} already has a clone; pass --reset to start it over "
                                    "from the active Main Brain") from None
            model = update_learner_model(session=session, learner_id=learner_id, kind=KIND, store=registry.store,
                                         artifact=artifact, source_version=loaded.version.version,
                                         status="pending", details=details, clock=clock)
            created = False
    log.info("%s clone of %s for a learner", "created" if created else "reset", loaded.version.version)
    return CloneResult(model=model, artifact=artifact, parameters=parameter_counts(loaded.brain.model, partition),
                       created=created)


def provision_clones(*, registry: Registry, settings: Settings, learner_ids: Sequence[str],
                     tenant: str = DEFAULT_TENANT, batch_size: int = 1000, clock: Clock = SYSTEM_CLOCK,
                     progress=None) -> ProvisionResult:
    """Clone the active Main Brain for many learners: one shared artifact, one transaction per
    `batch_size` registrations. Learners that already have a clone are left as they are."""
    started = time.perf_counter()
    loaded = load_main_brain(registry=registry)
    partition = partition_parameters(loaded.brain.model, frozen_prefixes=settings.freeze_layers)
    artifact = fresh_artifact(registry, loaded)
    details = {"partition": partition.to_dict()}
    created = existing = 0
    ids = list(dict.fromkeys(learner_ids))
    for start in range(0, len(ids), batch_size):
        with registry.session() as session:
            for learner_id in ids[start:start + batch_size]:
                try:
                    register_learner_model(session=session, store=registry.store, learner_id=learner_id,
                                           source_version=loaded.version.version, artifact=artifact, kind=KIND,
                                           status="pending", details=details, tenant=tenant, clock=clock)
                    created += 1
                except ConflictError:
                    existing += 1
        if progress is not None:
            progress(min(start + batch_size, len(ids)), len(ids))
    seconds = time.perf_counter() - started
    return ProvisionResult(main_version=loaded.version.version, created=created, existing=existing,
                           seconds=seconds, artifact=artifact,
                           learners_per_second=len(ids) / seconds if seconds > 0 else float("inf"))


def compare_clone(*, registry: Registry, settings: Settings, learner_id: str) -> CloneComparison:
    """Per-layer weight difference between the learner's served clone and its main version,
    and how many parameters are trainable, frozen and stored."""
    clone = load_clone(registry=registry, learner_id=learner_id)
    model = clone.main.brain.model
    partition = partition_parameters(model, frozen_prefixes=settings.freeze_layers)
    layers = layer_differences(model, clone.personal, partition)
    with registry.session(read_only=True) as session:
        active = get_active_main_version(session=session)
    stored = registry.store.size(clone.model.artifact_sha256) if clone.model.artifact_sha256 else None
    return CloneComparison(learner_id=learner_id, status=clone.model.status, source_version=clone.model.source_version,
                           active_version=active.version if active else None,
                           parameters=parameter_counts(model, partition), stored_bytes=stored, layers=layers,
                           metrics=clone.model.metrics)
