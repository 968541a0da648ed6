"""Per-learner LoRA adapters in the serving model: loaded on demand, kept in an LRU cache.

One base model stays in memory. Learner adapters live in PEFT adapter *slots*: a slot is a
named PEFT adapter of one LoRA shape (r, alpha, target modules), created once with
`add_adapter` and then reused. Loading a learner copies its weights into a free slot of its
shape, which costs a copy of the LoRA tensors; creating a PEFT adapter walks the whole module
tree and gets slower with every resident adapter, so it happens at most once per slot.

A learner's weights are only ever reachable through that learner's id: the artifact header
must name the same learner (checked by the store), a load must overwrite every tensor of the
slot (the key sets must match exactly, so nothing of a previous occupant survives), an evicted
slot's B matrices are zeroed (a stray reference would give base-model output, never another
learner's), and a batch maps each row to the slot of that row's own learner.

Not thread-safe by design: only the batch worker thread touches the model (batching.py).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from aivo.errors import ConflictError, IntegrityError
from aivo.tutor.adapter_store import AdapterRef, AdapterStore
from aivo.tutor.engine import BASE_ADAPTER, TutorEngine

log = logging.getLogger(__name__)


SpecKey = tuple[int, int, tuple[str, ...]]


@dataclass(frozen=True)
class CachedAdapter:
    learner_id: str
    name: str  # the PEFT adapter (slot) holding the learner's weights
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
    slots: int
    slots_created: int


@dataclass
class _Slot:
    name: str
    spec: SpecKey
    params: dict  # stored state-dict key -> the slot's parameter


class AdapterCache:
    def __init__(self, *, engine: TutorEngine, store: AdapterStore, capacity: int):
        if capacity < 1:
            raise ValueError("adapter cache capacity must be at least 1")
        self.engine = engine
        self.store = store
        self.capacity = capacity
        self._entries: OrderedDict[str, CachedAdapter] = OrderedDict()  # learner_id -> adapter, LRU first
        self._slots: dict[str, _Slot] = {}
        self._free: list[str] = []  # slot names without an occupant
        self._hits = self._loads = self._evictions = self._slots_created = 0
        self._load_seconds = 0.0

    def __contains__(self, learner_id: str) -> bool:
        return learner_id in self._entries

    def cached_learners(self) -> list[str]:
        """Learner ids, least recently used first."""
        return list(self._entries)

    def acquire(self, refs: Sequence[AdapterRef]) -> dict[str, str]:
        """Make every adapter in `refs` resident; return learner_id -> PEFT adapter name.

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
            mean_load_ms=round(1000 * self._load_seconds / self._loads, 3) if self._loads else 0.0,
            slots=len(self._slots), slots_created=self._slots_created)

    # --- internals -----------------------------------------------------------------------
    def _load(self, ref: AdapterRef) -> CachedAdapter:
        # start-up: torch loads with the tutor's model
        import torch

        if ref.base_fingerprint and ref.base_fingerprint != self.engine.fingerprint:
            raise IntegrityError(f"the adapter of learner {ref.learner_id} was trained on another base model "
                                 f"({ref.base_fingerprint}, serving {self.engine.fingerprint}); clone again")
        started = time.perf_counter()
        stored = self.store.load(ref)  # verifies the hash and that the artifact is this learner's
        spec: SpecKey = (stored.lora.r, stored.lora.alpha, tuple(stored.lora.target_modules))
        slot = self._take_slot(spec)
        try:
            if set(stored.tensors) != set(slot.params):
                raise IntegrityError(f"adapter {ref.sha256[:12]} does not fit the serving model: expected "
                                     f"{len(slot.params)} LoRA tensors of its shape, got {len(stored.tensors)}")
            with torch.no_grad():
                for key, tensor in stored.tensors.items():
                    param = slot.params[key]
                    if tuple(param.shape) != tuple(tensor.shape):
                        raise IntegrityError(f"adapter {ref.sha256[:12]}: {key} has shape {tuple(tensor.shape)}, "
                                             f"the model expects {tuple(param.shape)}")
                    param.copy_(tensor.to(device=param.device, dtype=param.dtype))
        except BaseException:
            self._release_slot(slot.name)
            raise
        num_parameters = sum(t.numel() for t in stored.tensors.values())
        num_bytes = sum(t.numel() * t.element_size() for t in stored.tensors.values())
        seconds = time.perf_counter() - started
        entry = CachedAdapter(learner_id=ref.learner_id, name=slot.name, sha256=ref.sha256,
                              num_parameters=num_parameters, num_bytes=num_bytes, load_seconds=seconds)
        self._entries[ref.learner_id] = entry
        self._loads += 1
        self._load_seconds += seconds
        log.debug("loaded adapter of %s into %s in %.1f ms", ref.learner_id, slot.name, 1000 * seconds)
        return entry

    def _take_slot(self, spec: SpecKey) -> _Slot:
        for name in self._free:
            if self._slots[name].spec == spec:
                self._free.remove(name)
                return self._slots[name]
        if len(self._slots) >= self.capacity and self._free:  # a free slot of another shape makes room
            self._delete_slot(self._free.pop(0))
        return self._create_slot(spec)

    def _create_slot(self, spec: SpecKey) -> _Slot:
        # start-up: PEFT loads only when a model does
        from peft import LoraConfig

        r, alpha, targets = spec
        name = f"slot_{self._slots_created}"
        model = self.engine.model
        model.add_adapter(name, LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=list(targets)))
        model.eval()
        marker = f".{name}."
        params = {n.replace(marker, "."): p for n, p in model.named_parameters() if marker in n}
        for p in params.values():
            p.requires_grad_(False)
        slot = _Slot(name=name, spec=spec, params=params)
        self._slots[name] = slot
        self._slots_created += 1
        return slot

    def _release_slot(self, name: str) -> None:
        # start-up: torch loads with the tutor's model
        import torch

        with torch.no_grad():
            for key, param in self._slots[name].params.items():
                if "lora_B" in key:
                    param.zero_()  # a free slot computes nothing
        self._free.append(name)

    def _delete_slot(self, name: str) -> None:
        model = self.engine.model
        active = model.active_adapters if isinstance(model.active_adapters, list) else [model.active_adapter]
        if name in active:
            model.set_adapter(BASE_ADAPTER)
        model.delete_adapter(name)
        del self._slots[name]

    def _unload(self, learner_id: str) -> None:
        entry = self._entries.pop(learner_id)
        self._release_slot(entry.name)
