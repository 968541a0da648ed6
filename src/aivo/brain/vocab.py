"""String ids (items, skills, item types) to embedding indices.

Index 0 is padding and index 1 stands for any id not seen in training (UNK), so a model
asked about a new item or skill at inference falls back to the learned UNK embedding
instead of crashing. Vocabularies serialize to plain JSON inside checkpoints.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from aivo.data.schema import InteractionLog, split_skills

PAD = 0
UNK = 1
_RESERVED = ("<pad>", "<unk>")


class Vocabulary:
    """An ordered set of string ids; `encode` maps them to indices >= 2, unknown ones to UNK."""

    def __init__(self, tokens: Iterable[str]):
        tokens = [str(t) for t in tokens]
        if len(set(tokens)) != len(tokens):
            raise ValueError("vocabulary tokens must be unique")
        self.tokens: list[str] = tokens
        self._index = pd.Index(tokens)
        self._lookup = {token: i + len(_RESERVED) for i, token in enumerate(tokens)}

    @classmethod
    def build(cls, values: Iterable[str]) -> "Vocabulary":
        """Sorted unique values (sorted so that the same data always gives the same indices)."""
        return cls(sorted({str(v) for v in values}))

    def __len__(self) -> int:
        """Embedding table size: the tokens plus PAD and UNK."""
        return len(self.tokens) + len(_RESERVED)

    def encode(self, values) -> np.ndarray:
        """(N,) strings -> (N,) int64 indices; unseen values -> UNK."""
        positions = self._index.get_indexer(pd.Index(np.asarray(values, dtype=object).astype(str)))
        return np.where(positions < 0, UNK, positions + len(_RESERVED)).astype(np.int64)

    def index_of(self, token: str) -> int:
        """One id's index (UNK if unseen), without building arrays."""
        return self._lookup.get(token, UNK)

    def decode(self, indices) -> list[str]:
        names = list(_RESERVED) + self.tokens
        return [names[i] for i in np.asarray(indices, dtype=np.int64)]

    def to_json(self) -> list[str]:
        return list(self.tokens)

    @classmethod
    def from_json(cls, tokens: list[str]) -> "Vocabulary":
        return cls(tokens)


@dataclass
class BrainVocab:
    items: Vocabulary
    skills: Vocabulary
    item_types: Vocabulary

    @classmethod
    def build(cls, log: InteractionLog) -> "BrainVocab":
        frame = log.frame
        skills = {s for value in frame["skill_ids"].unique() for s in split_skills(value)}
        item_types = frame["item_type"].dropna().unique() if "item_type" in frame.columns else []
        return cls(Vocabulary.build(frame["item_id"].unique()), Vocabulary.build(skills),
                   Vocabulary.build(item_types))

    def encode_skills(self, skill_ids, *, max_skills: int) -> np.ndarray:
        """(N,) ';'-separated skill strings -> (N, max_skills) indices, PAD-filled, first skill first."""
        values = pd.Series(np.asarray(skill_ids, dtype=object)).astype(str)
        unique = values.unique()
        table = np.full((len(unique), max_skills), PAD, dtype=np.int64)
        for row, value in enumerate(unique):
            parts = split_skills(value)[:max_skills] or [value]
            table[row, :len(parts)] = [self.skills.index_of(str(p)) for p in parts]
        return table[pd.Index(unique).get_indexer(values)]

    def to_json(self) -> dict[str, list[str]]:
        return {"items": self.items.to_json(), "skills": self.skills.to_json(),
                "item_types": self.item_types.to_json()}

    @classmethod
    def from_json(cls, data: dict[str, list[str]]) -> "BrainVocab":
        return cls(Vocabulary.from_json(data["items"]), Vocabulary.from_json(data["skills"]),
                   Vocabulary.from_json(data["item_types"]))
