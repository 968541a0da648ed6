"""Which model serves a learner: their clone when it is active, the Main Brain otherwise.

* clone `active` (it validated at least as well as the main model on the learner's held-out
  interactions): its main version's shared parameters plus its personal parameters;
* clone `fallback`, `pending` (never trained), `inactive`, or no clone: the active Main Brain.
"""

from __future__ import annotations

from dataclasses import dataclass

from aivo.brain.bundle import TrainedBrain
from aivo.brain.versions import load_main_brain
from aivo.errors import NotFoundError
from aivo.personalization.clone import KIND
from aivo.personalization.overlay import check_personal, personalized_brain
from aivo.registry import Registry, get_learner_model


@dataclass(frozen=True)
class ServedBrain:
    brain: TrainedBrain
    source: str  # "clone" | "main"
    version: str  # the main version whose shared parameters serve
    status: str | None  # the clone's status (None: no clone)


def brain_for_learner(*, registry: Registry, learner_id: str) -> ServedBrain:
    """The model that serves `learner_id` (pseudonym); see the module doc."""
    with registry.session(read_only=True) as session:
        try:
            model = get_learner_model(session=session, learner_id=learner_id, kind=KIND)
        except NotFoundError:
            model = None
    if model is None or model.status != "active" or model.artifact_sha256 is None:
        main = load_main_brain(registry=registry)
        return ServedBrain(main.brain, "main", main.version.version, model.status if model else None)
    main = load_main_brain(registry=registry, version=model.source_version)
    key = (main.version.artifact_sha256, model.artifact_sha256)
    tensors, metadata = registry.store.load_tensors(model.artifact_sha256)
    check_personal(tensors, metadata, main.brain, source=f"clone artifact {model.artifact_sha256[:12]}")
    return ServedBrain(personalized_brain(brain=main.brain, personal=tensors, cache_key=key), "clone",
                       main.version.version, model.status)
