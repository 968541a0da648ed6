"""Cloning: give a learner a personal model on top of the active Main Brain, and inspect it.

A clone is a registry learner model (kind "brain") whose artifact holds only the personal
parameters and whose source version is the main version they sit on. A fresh clone's personal
parameters are the Main Brain's neutral ones, so every fresh clone of a version shares one
artifact (the store is content-addressed): provisioning costs one database row per learner.
Fresh clones are `pending` (identical to the main model) until their first local training.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.config import Settings
from aivo.errors import ConflictError
from aivo.personalization.overlay import check_personal, personal_metadata, personal_state
from aivo.personalization.parts import ParameterPartition, partition_parameters
from aivo.registry import (
    ArtifactRef,
    LearnerModelRecord,
    Registry,
    get_learner_model,
    register_learner_model,
    update_learner_model,
)
from aivo.registry.tables import DEFAULT_TENANT
from aivo.brain.versions import LoadedBrain, load_main_brain

log = logging.getLogger(__name__)
KIND = "brain"


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


def parameter_counts(brain_model, partition: ParameterPartition) -> dict[str, int]:
    sizes = {name: p.numel() for name, p in brain_model.named_parameters()}
    counts = {role: sum(sizes[n] for n in getattr(partition, role)) for role in ("personal", "aggregated", "frozen")}
    counts["trainable"] = counts["personal"] + counts["aggregated"]
    counts["stored_in_clone"] = counts["personal"]
    return counts


def _fresh_artifact(registry: Registry, loaded: LoadedBrain) -> ArtifactRef:
    return registry.store.put_tensors(personal_state(loaded.brain),
                                      metadata=personal_metadata(main_version=loaded.version.version))


def clone_learner(*, registry: Registry, settings: Settings, learner_id: str, tenant: str = DEFAULT_TENANT,
                  reset: bool = False, clock: Clock = SYSTEM_CLOCK) -> CloneResult:
    """Clone the active Main Brain for the learner (pseudonym). A learner has one clone: a
    second clone is a conflict unless `reset`, which restarts it from the active version
    (its training history is kept)."""
    loaded = load_main_brain(registry=registry)
    partition = partition_parameters(loaded.brain.model, frozen_prefixes=settings.freeze_layers)
    artifact = _fresh_artifact(registry, loaded)
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
    artifact = _fresh_artifact(registry, loaded)
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


@dataclass(frozen=True)
class LoadedClone:
    model: LearnerModelRecord
    main: LoadedBrain  # the clone's source version
    personal: dict[str, torch.Tensor]


def load_clone(*, registry: Registry, learner_id: str) -> LoadedClone:
    """The learner's clone record, its source main version and its (verified) personal parameters."""
    with registry.session(read_only=True) as session:
        model = get_learner_model(session=session, learner_id=learner_id, kind=KIND)
    main = load_main_brain(registry=registry, version=model.source_version)
    if model.artifact_sha256 is None:
        return LoadedClone(model=model, main=main, personal=personal_state(main.brain))
    tensors, metadata = registry.store.load_tensors(model.artifact_sha256)
    check_personal(tensors, metadata, main.brain, source=f"clone artifact {model.artifact_sha256[:12]}")
    return LoadedClone(model=model, main=main, personal=tensors)


@dataclass(frozen=True)
class LayerDifference:
    layer: str
    role: str  # personal | aggregated | frozen
    num_parameters: int
    l2_difference: float
    max_abs_difference: float
    relative_difference: float | None  # l2 difference / l2 norm of the main model's layer


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
        from dataclasses import asdict

        return asdict(self)


def _layers(model) -> dict[str, str]:
    """Parameter name -> layer: a torch.nn building block (Linear, Embedding, GRU, ...) is one
    layer; a parameter held directly by an AIVO module is a layer of its own."""
    layers = {}
    for module_name, module in model.named_modules():
        builtin = type(module).__module__.startswith("torch.nn")
        for param_name, _ in module.named_parameters(recurse=False):
            full = f"{module_name}.{param_name}" if module_name else param_name
            layers[full] = module_name if builtin and module_name else full
    return layers


def compare_clone(*, registry: Registry, settings: Settings, learner_id: str) -> CloneComparison:
    """Per-layer weight difference between the learner's served clone and its main version,
    and how many parameters are trainable, frozen and stored."""
    clone = load_clone(registry=registry, learner_id=learner_id)
    model = clone.main.brain.model
    partition = partition_parameters(model, frozen_prefixes=settings.freeze_layers)
    roles = {**{n: "personal" for n in partition.personal}, **{n: "aggregated" for n in partition.aggregated},
             **{n: "frozen" for n in partition.frozen}}
    grouped: dict[str, list[tuple[np.ndarray, np.ndarray, str]]] = {}
    layer_of = _layers(model)
    for name, param in model.named_parameters():
        main_values = param.detach().double().numpy().ravel()
        clone_values = (clone.personal[name].double().numpy().ravel() if name in clone.personal else main_values)
        grouped.setdefault(layer_of[name], []).append((main_values, clone_values, roles.get(name, "frozen")))
    layers = []
    for layer, parts in grouped.items():
        main_values = np.concatenate([p[0] for p in parts])
        diff = np.concatenate([p[1] for p in parts]) - main_values
        l2 = float(np.linalg.norm(diff))
        main_norm = float(np.linalg.norm(main_values))
        layers.append(LayerDifference(layer=layer, role=parts[0][2], num_parameters=int(diff.size), l2_difference=l2,
                                      max_abs_difference=float(np.abs(diff).max()) if diff.size else 0.0,
                                      relative_difference=l2 / main_norm if main_norm > 0 else None))
    with registry.session(read_only=True) as session:
        from aivo.registry import get_active_main_version

        active = get_active_main_version(session=session)
    stored = registry.store.size(clone.model.artifact_sha256) if clone.model.artifact_sha256 else None
    return CloneComparison(learner_id=learner_id, status=clone.model.status, source_version=clone.model.source_version,
                           active_version=active.version if active else None,
                           parameters=parameter_counts(model, partition), stored_bytes=stored, layers=layers,
                           metrics=clone.model.metrics)
