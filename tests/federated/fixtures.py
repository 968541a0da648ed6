"""Fixtures shared by the personalization, federated and privacy tests.

Registry fixtures come from tests/registry/conftest.py (every test taking `registry` runs on
SQLite and on PostgreSQL). `small_world` is a tiny simulated cohort and a Main Brain trained
on it for one epoch (built once per session: a few seconds), `world_registry` a registry that
holds both, the brain registered and promoted.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from aivo.brain.bundle import TrainedBrain
from aivo.brain.config import BrainConfig
from aivo.brain.train import train_main_brain
from aivo.config import Settings
from aivo.data.schema import InteractionLog
from aivo.data.simulator import SimulatorConfig, simulate_cohort
from aivo.data.splits import split_by_learner
from aivo.registry import import_interactions, list_learners
from aivo.brain.versions import clear_cache, register_brain

SECRET = b"federated-tests-secret-key-0123456789"


@dataclass(frozen=True)
class SmallWorld:
    brain: TrainedBrain
    log: InteractionLog


@pytest.fixture(scope="session")
def small_world() -> SmallWorld:
    torch.set_num_threads(1)
    cohort = simulate_cohort(config=SimulatorConfig(num_learners=40, interactions_per_learner=30), seed=3)
    split = split_by_learner(cohort.log, fractions=(0.8, 0.2, 0.0), seed=3)
    config = BrainConfig(embed_dim=8, hidden_dim=16, head_hidden_dim=16, evidence_dim=4, max_epochs=1,
                         dropout=0.0, batch_size=16)
    result = train_main_brain(train=split.train, validation=split.validation, config=config, seed=3)
    return SmallWorld(brain=result.brain, log=cohort.log)


@dataclass
class World:
    registry: object
    settings: Settings
    learners: list[str]  # pseudonyms, sorted
    version: str


@pytest.fixture
def world(registry, small_world, tmp_path, clock) -> World:
    """A registry holding the cohort's interactions and the small brain as the active version."""
    clear_cache()
    settings = Settings(home=tmp_path / "home", secret_key=SECRET.decode(), seed=0)
    with registry.session() as session:
        import_interactions(session=session, log=small_world.log, secret_key=SECRET)
    record = register_brain(registry=registry, brain=small_world.brain, training_metrics={}, data_hash=None,
                            promote=True, actor="tests", reason="setup", clock=clock)
    with registry.session(read_only=True) as session:
        learners = sorted(r.learner_id for r in list_learners(session=session, limit=1000))
    return World(registry=registry, settings=settings, learners=learners, version=record.version)
