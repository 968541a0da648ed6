"""A clone as a servable model: its main version's shared parameters plus its personal ones.

A clone's artifact holds only the personal parameters (`personal.*`) and names the main
version they sit on. `personalized_brain` builds the served model without touching the
(cached, shared) Main Brain: a shallow copy that shares the shared parameters' tensors and owns
only its personal ones. Copies are cached
by (main artifact, personal artifact), both immutable, so the cache needs no invalidation.
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch

from aivo.brain.bundle import TrainedBrain
from aivo.errors import IntegrityError

PERSONAL_KIND = "aivo.learner_personal"
PERSONAL_FORMAT_VERSION = 1
_CACHE_SIZE = 256
_cache: "OrderedDict[tuple[str, str], TrainedBrain]" = OrderedDict()
_lock = threading.Lock()


def personal_state(brain: TrainedBrain) -> dict[str, torch.Tensor]:
    """The personal parameters of a brain (the Main Brain's are its neutral starting point)."""
    return {name: p.detach().to(torch.float32).clone().contiguous()
            for name, p in brain.model.named_parameters() if name.startswith("personal.")}


def personal_metadata(*, main_version: str, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"kind": PERSONAL_KIND, "format_version": PERSONAL_FORMAT_VERSION, "main_version": main_version,
            **dict(extra or {})}


def check_personal(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, Any], brain: TrainedBrain, *,
                   source: str) -> None:
    """Refuse personal parameters that are not a clone's or do not fit `brain`."""
    if metadata.get("kind") != PERSONAL_KIND or metadata.get("format_version") != PERSONAL_FORMAT_VERSION:
        raise IntegrityError(f"{source}: not a clone's personal parameters (kind {metadata.get('kind')!r})")
    expected = {name: tuple(p.shape) for name, p in brain.model.named_parameters() if name.startswith("personal.")}
    got = {name: tuple(t.shape) for name, t in tensors.items()}
    if got != expected:
        raise IntegrityError(f"{source}: personal parameters do not fit the Main Brain "
                             f"(expected {sorted(expected)}, got {sorted(got)})")


def personalized_brain(*, brain: TrainedBrain, personal: Mapping[str, torch.Tensor],
                       cache_key: tuple[str, str] | None = None) -> TrainedBrain:
    """`brain` with its personal parameters replaced (a copy; `brain` is never modified)."""
    if cache_key is not None:
        with _lock:
            hit = _cache.get(cache_key)
            if hit is not None:
                _cache.move_to_end(cache_key)
                return hit
    # The copy shares every non-personal parameter and buffer with `brain` (deepcopy's memo maps
    # them to themselves): a personalized model costs only its personal parameters in memory.
    memo = {id(t): t for name, t in [*brain.model.named_parameters(), *brain.model.named_buffers()]
            if not name.startswith("personal.")}
    model = copy.deepcopy(brain.model, memo)
    with torch.no_grad():
        params = dict(model.named_parameters())
        for name, value in personal.items():
            params[name].copy_(value.to(params[name].dtype))
    model.eval()
    served = TrainedBrain(model=model, vocab=brain.vocab, tables=brain.tables,
                          info={**brain.info, "personalized": True})
    if cache_key is not None:
        with _lock:
            _cache[cache_key] = served
            while len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
    return served


def clear_cache() -> None:
    with _lock:
        _cache.clear()
