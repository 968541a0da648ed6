"""Training fixtures: the registry fixtures (SQLite and PostgreSQL, see tests/registry/conftest.py),
settings that point at them, and a tiny simulated cohort with a tiny Main Brain config so that a
whole pipeline run takes about a second."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
import torch

from aivo.config import Settings
from aivo.data.schema import InteractionLog
from aivo.data.simulator import SimulatorConfig, simulate_cohort
from aivo.registry import Registry, import_interactions
from tests.registry.conftest import (  # noqa: F401  (fixtures)
    backend,
    clock,
    db_url,
    engine,
    pg_databases,
    pg_migrated_url,
    registry,
    sqlite_template,
    store,
)

SECRET = "training-tests-secret-key-0123456789"
# Small enough for ~0.2 s per epoch on one thread, big enough for AUCs clearly above chance.
TINY_BRAIN = {"embed_dim": 8, "hidden_dim": 16, "head_hidden_dim": 16, "evidence_dim": 4, "max_epochs": 3,
              "patience": 2}
COHORT_START = datetime(2024, 9, 2, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def make_settings(tmp_path, db_url: str, **overrides) -> Settings:
    values = dict(home=tmp_path / "home", database_url=db_url, secret_key=SECRET, num_threads=1, hpo_trials=0,
                  hpo_timeout_s=60.0, max_epochs=3, job_lease_s=6.0, scheduler_enabled=False)
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(tmp_path, db_url) -> Settings:
    return make_settings(tmp_path, db_url)


@pytest.fixture(scope="session")
def cohort() -> InteractionLog:
    """80 learners x 40 interactions, grades 3-4 math (deterministic)."""
    config = SimulatorConfig(num_learners=80, interactions_per_learner=40, grades=(3, 4), subjects=("math",))
    return simulate_cohort(config=config, seed=1).log


def import_log(registry: Registry, log: InteractionLog, *, tenant: str = "default") -> None:
    with registry.session() as session:
        import_interactions(session=session, log=log, secret_key=SECRET.encode(), tenant=tenant)


@pytest.fixture
def loaded(registry, cohort) -> Registry:
    """The registry with the cohort imported."""
    import_log(registry, cohort)
    return registry
