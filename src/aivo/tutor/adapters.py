"""Per-learner LoRA adapters in the serving model: loaded on demand, kept in an LRU cache.

One base model stays in memory; each cached learner adds only its LoRA weights to the
`PeftModel`, under a name derived from the learner id. The cache is keyed by learner and
remembers which artifact it loaded, so a re-cloned learner gets the new adapter. A learner's
adapter is only ever reachable through that learner's id: the name is a hash of the id, the
artifact header must name the same learner (checked by the store), and a batch maps each
row to the adapter of that row's own learner.

Not thread-safe by design: only the batch worker thread touches the model (batching.py).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from aivo.errors import ConflictError, IntegrityError
from aivo.tutor.adapter_store import AdapterRef, AdapterStore
from aivo.tutor.engine import BASE_ADAPTER, TutorEngine

log = logging.getLogger(__name__)


def adapter_name_for(learner_id: str) -> str:
    """The module-safe adapter name of a learner (PEFT uses it as a ModuleDict key)."""
    return "learner_" + hashlib.sha256(learner_id.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class CachedAdapter:
    learner_id: str
    name: str
    sha256: str
    num_parameters: int
    num_bytes: int
    load_seconds: float


@dataclass(frozen=True)
class AdapterCacheStats:
    capacity: int
    size: int
    hits: int
    loads: int
    evictions: int
    cached_bytes: int
    mean_load_ms: float


class AdapterCache:
    def __init__(self, *, engine: TutorEngine, store: AdapterStore, capacity: int):
        if capacity < 1:
            raise ValueError("adapter cache capacity must be at least 1")
        self.engine = engine
        self.store = store
        self.capacity = capacity
        self._entries: OrderedDict[str, CachedAdapter] = OrderedDict()  # learner_id -> adapter, LRU first
        self._hits = self._loads = self._evictions = 0
        self._load_seconds = 0.0

    def __contains__(self, learner_id: str) -> bool:
        return learner_id in self._entries

    def cached_learners(self) -> list[str]:
        """Learner ids, least recently used first."""
        return list(self._entries)

    def acquire(self, refs: Sequence[AdapterRef]) -> dict[str, str]:
        """Make every adapter in `refs` resident; return learner_id -> adapter name.

        Adapters needed by this call are never evicted by it, so a batch may use at most
        `capacity` distinct learners (the batcher splits larger batches).
        """
        wanted: dict[str, AdapterRef] = {}
        for ref in refs:
            if wanted.setdefault(ref.learner_id, ref) != ref:
                raise ConflictError(f"two different adapters requested for learner {ref.learner_id}")
        if len(wanted) > self.capacity:
            raise ConflictError(f"{len(wanted)} adapters requested at once, cache holds {self.capacity}")
        names: dict[str, str] = {}
        for learner_id, ref in wanted.items():
            entry = self._entries.get(learner_id)
            if entry is not None and entry.sha256 == ref.sha256:
                self._entries.move_to_end(learner_id)
                self._hits += 1
            else:
                if entry is not None:  # the learner was re-cloned: drop the old weights
                    self._unload(learner_id)
                while len(self._entries) >= self.capacity:
                    victim = next(lid for lid in self._entries if lid not in wanted)
                    self._unload(victim)
                    self._evictions += 1
                entry = self._load(ref)
            names[learner_id] = entry.name
        return names

    def evict(self, learner_id: str) -> bool:
        """Drop a learner's adapter (e.g. after the learner was deleted)."""
        if learner_id not in self._entries:
            return False
        self._unload(learner_id)
        return True

    def stats(self) -> AdapterCacheStats:
        return AdapterCacheStats(
            capacity=self.capacity, size=len(self._entries), hits=self._hits, loads=self._loads,
            evictions=self._evictions, cached_bytes=sum(e.num_bytes for e in self._entries.values()),
            mean_load_ms=round(1000 * self._load_seconds / self._loads, 3) if self._loads else 0.0)

    # --- internals -----------------------------------------------------------------------
    def _load(self, ref: AdapterRef) -> CachedAdapter:
        from peft import LoraConfig, set_peft_model_state_dict

        if ref.base_fingerprint and ref.base_fingerprint != self.engine.fingerprint:
            raise IntegrityError(f"the adapter of learner {ref.learner_id} was trained on another base model "
                                 f"({ref.base_fingerprint}, serving {self.engine.fingerprint}); clone again")
        started = time.perf_counter()
        stored = self.store.load(ref)  # verifies the hash and that the artifact is this learner's
        name = adapter_name_for(ref.learner_id)
        model = self.engine.model
        config = LoraConfig(r=stored.lora.r, lora_alpha=stored.lora.alpha, lora_dropout=0.0,
                            target_modules=list(stored.lora.target_modules))
        model.add_adapter(name, config)
        try:
            result = set_peft_model_state_dict(model, stored.tensors, adapter_name=name)
            unexpected = list(getattr(result, "unexpected_keys", []) or [])
            missing = [k for k in getattr(result, "missing_keys", []) or [] if name in k and "lora_" in k]
            if unexpected or missing:
                raise IntegrityError(f"adapter {ref.sha256[:12]} does not fit the serving model "
                                     f"(unexpected {unexpected[:3]}, missing {missing[:3]})")
        except BaseException:
            self._delete_from_model(name)
            raise
        model.eval()
        num_parameters = sum(t.numel() for t in stored.tensors.values())
        num_bytes = sum(t.numel() * t.element_size() for t in stored.tensors.values())
        seconds = time.perf_counter() - started
        entry = CachedAdapter(learner_id=ref.learner_id, name=name, sha256=ref.sha256,
                              num_parameters=num_parameters, num_bytes=num_bytes, load_seconds=seconds)
        self._entries[ref.learner_id] = entry
        self._loads += 1
        self._load_seconds += seconds
        log.debug("loaded adapter of %s (%d params) in %.1f ms", ref.learner_id, num_parameters, 1000 * seconds)
        return entry

    def _unload(self, learner_id: str) -> None:
        entry = self._entries.pop(learner_id)
        self._delete_from_model(entry.name)

    def _delete_from_model(self, name: str) -> None:
        model = self.engine.model
        if name in model.peft_config:
            if name in (model.active_adapters if isinstance(model.active_adapters, list)
                        else [model.active_adapter]):
                model.set_adapter(BASE_ADAPTER)
            model.delete_adapter(name)
