"""`TrainedBrain`: a model together with everything needed to feed it (vocabulary, label tables)."""

from __future__ import annotations

from dataclasses import dataclass, field

from aivo.brain.config import BrainConfig
from aivo.brain.labels import LabelTables
from aivo.brain.model import MainBrain
from aivo.brain.vocab import BrainVocab


@dataclass
class TrainedBrain:
    model: MainBrain
    vocab: BrainVocab
    tables: LabelTables
    # Provenance carried into checkpoints: data hash, metrics, seed, ...
    info: dict = field(default_factory=dict)

    @property
    def config(self) -> BrainConfig:
        return self.model.config


def build_model(config: BrainConfig, vocab: BrainVocab) -> MainBrain:
    return MainBrain(config, num_items=len(vocab.items), num_skills=len(vocab.skills),
                     num_item_types=len(vocab.item_types))
