"""Where learner adapters live: the registry.

An adapter is an immutable safetensors artifact in the registry's content-addressed store
(LoRA weights, with the learner, the LoRA shape and the base model's fingerprint in its
header). The learner's `tutor` learner-model row points at the current adapter, and every
clone adds a training session. Artifact first, row second: a crash leaves no dangling row,
and the registry's garbage collector sees every adapter that a row references.

`AdapterStore` is the small interface the cache and the cloner use, so that tests or a
future store can stand in for the registry.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.errors import ConflictError, IntegrityError, NotFoundError
from aivo.registry import (
    Registry,
    get_active_main_version,
    get_learner_model,
    record_training_session,
    register_learner_model,
    update_learner_model,
)
from aivo.tutor.options import LoraSpec

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

TUTOR_KIND = "tutor"  # learner_models.kind of tutor adapters
ADAPTER_FORMAT = "aivo-tutor-lora/1"
# "fallback" means the personal model validated worse and the main model serves the learner.
SERVABLE_STATUSES = ("active",)
NO_MAIN_VERSION = ("a tutor adapter is registered against the active Main Brain version, and there is none "
                   "yet: train and promote a Main Brain first")


@dataclass(frozen=True)
class AdapterRef:
    """A learner's current adapter: enough to find, verify and cache it."""

    learner_id: str
    sha256: str
    size: int
    base_fingerprint: str


@dataclass(frozen=True)
class StoredAdapter:
    ref: AdapterRef
    lora: LoraSpec
    tensors: dict[str, "torch.Tensor"]
    metadata: dict[str, Any]


@dataclass(frozen=True)
class AdapterTraining:
    """What a clone's fine-tuning did, recorded as the learner's training session."""

    epochs: int
    batch_size: int
    samples: int
    final_loss: float | None
    details: dict[str, Any]


class AdapterStore(Protocol):
    def check_ready(self) -> None: ...  # raise an AivoError if `save` cannot succeed now

    def save(self, *, learner_id: str, tenant: str, lora: LoraSpec, tensors: dict[str, "torch.Tensor"],
             base_fingerprint: str, base_model: str, training: AdapterTraining) -> AdapterRef: ...

    def latest(self, learner_id: str) -> AdapterRef | None: ...

    def load(self, ref: AdapterRef) -> StoredAdapter: ...


class RegistryAdapterStore:
    """Adapters in the registry: artifact store + `learner_models` (kind "tutor")."""

    def __init__(self, registry: "Registry", *, clock: Clock = SYSTEM_CLOCK):
        self.registry = registry
        self.clock = clock

    def check_ready(self) -> None:
        with self.registry.session(read_only=True) as session:
            if get_active_main_version(session=session) is None:
                raise ConflictError(NO_MAIN_VERSION)

    def save(self, *, learner_id: str, tenant: str, lora: LoraSpec, tensors: dict[str, "torch.Tensor"],
             base_fingerprint: str, base_model: str, training: AdapterTraining) -> AdapterRef:
        metadata = {"format": ADAPTER_FORMAT, "learner_id": learner_id, "lora": lora.to_dict(),
                    "base_fingerprint": base_fingerprint, "base_model": base_model}
        artifact = self.registry.store.put_tensors(tensors, metadata=metadata)  # durable first
        details = {"base_fingerprint": base_fingerprint, "base_model": base_model, "lora": lora.to_dict()}
        metrics = {"final_loss": training.final_loss, "samples": training.samples}

        def write(session) -> None:
            active = get_active_main_version(session=session)
            if active is None:
                raise ConflictError(NO_MAIN_VERSION)
            try:
                get_learner_model(session=session, learner_id=learner_id, kind=TUTOR_KIND)
            except NotFoundError:
                register_learner_model(session=session, store=self.registry.store, learner_id=learner_id,
                                       source_version=active.version, artifact=None, kind=TUTOR_KIND,
                                       details=details, tenant=tenant, clock=self.clock)
            record_training_session(session=session, store=self.registry.store, learner_id=learner_id,
                                    kind=TUTOR_KIND, main_version=active.version, epochs=training.epochs,
                                    batch_size=training.batch_size, samples=training.samples,
                                    final_loss=training.final_loss, artifact=artifact, metrics=metrics,
                                    details=training.details, clock=self.clock)
            update_learner_model(session=session, learner_id=learner_id, kind=TUTOR_KIND, status="active",
                                 details=details, metrics=metrics, clock=self.clock)

        self.registry.run(write)
        log.info("adapter %s saved for learner %s (%d bytes)", artifact.sha256[:12], learner_id, artifact.size)
        return AdapterRef(learner_id=learner_id, sha256=artifact.sha256, size=artifact.size,
                          base_fingerprint=base_fingerprint)

    def latest(self, learner_id: str) -> AdapterRef | None:
        try:
            with self.registry.session(read_only=True) as session:
                record = get_learner_model(session=session, learner_id=learner_id, kind=TUTOR_KIND)
        except NotFoundError:
            return None
        if record.status not in SERVABLE_STATUSES or not record.artifact_sha256:
            return None
        size = self.registry.store.size(record.artifact_sha256)
        return AdapterRef(learner_id=learner_id, sha256=record.artifact_sha256, size=size,
                          base_fingerprint=str(record.details.get("base_fingerprint", "")))

    def load(self, ref: AdapterRef) -> StoredAdapter:
        tensors, metadata = self.registry.store.load_tensors(ref.sha256)  # hash-verified
        if metadata.get("format") != ADAPTER_FORMAT:
            raise IntegrityError(f"artifact {ref.sha256} is not a tutor adapter")
        if metadata.get("learner_id") != ref.learner_id:
            # The row and the artifact disagree about whose adapter this is: never serve it.
            raise IntegrityError(f"adapter {ref.sha256} belongs to another learner; refusing to load it "
                                 f"for {ref.learner_id}")
        lora = metadata["lora"]
        spec = LoraSpec(r=int(lora["r"]), alpha=int(lora["alpha"]), dropout=float(lora["dropout"]),
                        target_modules=tuple(lora["target_modules"]))
        return StoredAdapter(ref=ref, lora=spec, tensors=tensors, metadata=metadata)
