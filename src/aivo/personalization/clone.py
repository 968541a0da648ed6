"""Clones: a learner's personal model on top of a Main Brain version. The use cases that create
and inspect clones are `aivo.services.clones`.

A clone is a registry learner model (kind "brain") whose artifact holds only the personal
parameters and whose source version is the main version they sit on. A fresh clone's personal
parameters are the Main Brain's neutral ones, so every fresh clone of a version shares one
artifact (the store is content-addressed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from aivo.brain.versions import LoadedBrain, load_main_brain
from aivo.personalization.overlay import check_personal, personal_metadata, personal_state
from aivo.personalization.parts import ParameterPartition
from aivo.registry import ArtifactRef, LearnerModelRecord, Registry, get_learner_model

KIND = "brain"  # learner_models.kind of Main Brain clones


def parameter_counts(brain_model, partition: ParameterPartition) -> dict[str, int]:
    sizes = {name: p.numel() for name, p in brain_model.named_parameters()}
    counts = {role: sum(sizes[n] for n in getattr(partition, role)) for role in ("personal", "aggregated", "frozen")}
    counts["trainable"] = counts["personal"] + counts["aggregated"]
    counts["stored_in_clone"] = counts["personal"]
    return counts


def fresh_artifact(registry: Registry, loaded: LoadedBrain) -> ArtifactRef:
    """The personal parameters of a fresh clone of `loaded` (its neutral ones), stored: every
    fresh clone of a version shares this one content-addressed artifact."""
    return registry.store.put_tensors(personal_state(loaded.brain),
                                      metadata=personal_metadata(main_version=loaded.version.version))


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


def layer_differences(model, personal: dict[str, torch.Tensor], partition: ParameterPartition
                      ) -> list[LayerDifference]:
    """Per layer: how far `personal` (a clone's parameters) is from `model`'s (its main version)."""
    roles = {**{n: "personal" for n in partition.personal}, **{n: "aggregated" for n in partition.aggregated},
             **{n: "frozen" for n in partition.frozen}}
    grouped: dict[str, list[tuple[np.ndarray, np.ndarray, str]]] = {}
    layer_of = _layers(model)
    for name, param in model.named_parameters():
        main_values = param.detach().double().numpy().ravel()
        clone_values = (personal[name].double().numpy().ravel() if name in personal else main_values)
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
    return layers
