"""Small interaction logs for Main Brain tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from aivo.brain.config import BrainConfig
from aivo.data.schema import InteractionLog, make_log

TINY = dict(embed_dim=8, hidden_dim=12, head_hidden_dim=10, evidence_dim=4, max_epochs=2, batch_size=8)


def tiny_config(**changes) -> BrainConfig:
    return BrainConfig(**{**TINY, **changes})


def random_log(*, num_learners: int = 12, length: int = 30, num_items: int = 9, seed: int = 0,
               item_types: bool = True) -> InteractionLog:
    """Learners answering random items; multi-skill items; ability makes answers learnable."""
    rng = np.random.default_rng(seed)
    rows = []
    for learner in range(num_learners):
        ability = rng.normal()
        n = int(rng.integers(length // 2, length + 1))
        for order in range(n):
            item = int(rng.integers(num_items))
            p = 1 / (1 + np.exp(-(ability - (item - num_items / 2) / 3)))
            row = {"learner_id": f"L{learner:03d}", "item_id": f"q{item}",
                   "skill_ids": f"s{item % 3}" + (f";s{(item + 1) % 4}" if item % 2 else ""),
                   "correct": int(rng.random() < p), "order": order}
            if item_types:
                row["item_type"] = "word" if item % 3 == 0 else "mc"
            rows.append(row)
    return make_log(pd.DataFrame(rows))
