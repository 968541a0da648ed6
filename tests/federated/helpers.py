"""Builders for federated tests: updates from plain arrays."""

from __future__ import annotations

import numpy as np
import torch

from aivo.federated.updates import LearnerUpdate, UpdateSpec

SPEC = UpdateSpec(main_version="v1", shapes={"w": (2, 2), "b": (3,)})


def update(values, *, learner="l", examples=10, score=None, version="v1", session_id=None) -> LearnerUpdate:
    """values: 7 numbers (w row-major, then b)."""
    flat = torch.tensor(np.asarray(values, dtype=np.float32))
    return LearnerUpdate(learner_id=learner, tensors={"w": flat[:4].reshape(2, 2).clone(), "b": flat[4:].clone()},
                         main_version=version, num_examples=examples, score=score, session_id=session_id)
