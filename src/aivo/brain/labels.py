"""Label derivation for the auxiliary heads, fixed on the training set and stored in checkpoints.

* difficulty level of an item (10 levels by default): the item's training-set error rate,
  smoothed towards the global error rate with `prior_count` pseudo-attempts
  ((wrong + prior_count * global_error) / (attempts + prior_count)), binned by the deciles of
  that smoothed rate over the training items (unweighted: each level holds ~10% of the items).
  Level 0 = easiest. Items unseen in training (and UNK) get the level of the global error rate.
* next content: the first skill id of the next interaction (its index in the skill vocabulary).
  It needs no table: it is read from the data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aivo.brain.vocab import PAD, UNK, BrainVocab
from aivo.data.schema import InteractionLog


@dataclass
class LabelTables:
    global_correct_rate: float
    level_edges: list[float]  # (num_levels - 1,) inner bin edges of the smoothed error rate
    item_level: list[int]  # (len(vocab.items),) difficulty level per item index
    item_error_rate: list[float]  # (len(vocab.items),) smoothed training error rate per item index

    def expected_correct(self, item_index: np.ndarray) -> np.ndarray:
        """(N,) item indices -> (N,) smoothed training correct rate of each item."""
        return 1.0 - np.asarray(self.item_error_rate, dtype=np.float64)[item_index]

    @property
    def num_levels(self) -> int:
        return len(self.level_edges) + 1

    def to_json(self) -> dict:
        return {"global_correct_rate": self.global_correct_rate, "level_edges": self.level_edges,
                "item_level": self.item_level, "item_error_rate": self.item_error_rate}

    @classmethod
    def from_json(cls, data: dict) -> "LabelTables":
        return cls(float(data["global_correct_rate"]), [float(x) for x in data["level_edges"]],
                   [int(x) for x in data["item_level"]], [float(x) for x in data["item_error_rate"]])


def derive_label_tables(train: InteractionLog, vocab: BrainVocab, *, num_levels: int,
                        prior_count: float) -> LabelTables:
    frame = train.frame
    item_index = vocab.items.encode(frame["item_id"].to_numpy())
    wrong = 1.0 - frame["correct"].to_numpy(dtype=np.float64)
    size = len(vocab.items)
    attempts = np.bincount(item_index, minlength=size).astype(np.float64)
    wrongs = np.bincount(item_index, weights=wrong, minlength=size)
    global_error = float(wrong.mean())
    smoothed = (wrongs + prior_count * global_error) / (attempts + prior_count)
    seen = attempts > 0
    seen[[PAD, UNK]] = False
    rates = smoothed[seen] if seen.any() else np.array([global_error])
    edges = np.quantile(rates, np.linspace(0, 1, num_levels + 1)[1:-1])
    # side="right": an item exactly on an edge goes to the harder level; ties across many items
    # (e.g. all with the same rate) collapse levels rather than splitting equal items.
    levels = np.searchsorted(edges, smoothed, side="right")
    return LabelTables(global_correct_rate=1.0 - global_error, level_edges=edges.tolist(),
                       item_level=levels.astype(int).tolist(), item_error_rate=smoothed.tolist())
