"""Small helpers shared across layers: seeding, device choice, hashing."""

from __future__ import annotations

import hashlib
import random

import numpy as np


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch. Library code should still pass explicit generators."""
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def pick_device(preference: str = "auto") -> str:
    import torch

    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        return "cuda"
    return "cpu"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
