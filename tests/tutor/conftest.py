"""Tutor fixtures: one tiny model per test session, a registry with an active Main Brain
version (tutor adapters are registered against it), and services built on both."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from aivo.config import Settings

torch.set_num_threads(1)  # two shared cores: never oversubscribe them

# Small and quick: 64 wide, 2 layers, 80 training steps (a few seconds on one thread).
TINY_TEST_SPEC = dict(hidden_size=64, intermediate_size=176, num_layers=2, num_heads=4, num_kv_heads=2,
                      train_steps=80, learning_rate=5e-3, seed=0)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from aivo.tutor.tiny_model import TinyModelSpec, build_tiny_model

    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("tutor") / "tiny"
    build_tiny_model(output_dir=path, spec=TinyModelSpec(**TINY_TEST_SPEC))
    return path


def make_settings(home: Path, model_dir: Path, **overrides) -> Settings:
    values = dict(home=home, brain_model=str(model_dir), num_threads=1, tutor_lora_r=4, tutor_lora_alpha=8,
                  tutor_lora_dropout=0.0, tutor_clone_epochs=12, tutor_clone_learning_rate=1e-2,
                  adapter_cache_size=2, tutor_batch_window_ms=20.0, max_new_tokens=24)
    values.update(overrides)
    return Settings(**values)


def promote_main_version(settings: Settings) -> None:
    """Tutor adapters are registered against the active Main Brain version: create one."""
    from aivo.registry import open_registry, promote_main_version as promote, register_main_version

    registry = open_registry(settings)
    with registry.session() as session:
        ref = registry.store.put_tensors({"weight": torch.zeros(4)}, metadata={"kind": "test-main"})
        register_main_version(session=session, store=registry.store, version="aivo-main-v1", artifact=ref,
                              architecture={"kind": "test"})
        promote(session=session, version="aivo-main-v1", actor="test", reason="tutor tests")


@pytest.fixture
def tutor_settings(aivo_home, tiny_model_dir) -> Settings:
    settings = make_settings(aivo_home, tiny_model_dir)
    promote_main_version(settings)
    return settings


def start_clone_worker(settings: Settings):
    """Clones are trainer jobs: an in-process worker (tutor_clone jobs only) runs them, as the
    embedded worker of `aivo serve` or `aivo worker run` does."""
    from aivo.registry import open_registry
    from aivo.services.jobs import start_worker_thread

    return start_worker_thread(registry=open_registry(settings), settings=settings, poll_s=0.05,
                               kinds=("tutor_clone",))


def wait_for_clone(service, clone_id: str, timeout: float = 600.0):
    from aivo.services.tutor_clones import wait_for_clone as wait

    return wait(registry=service.registry, clone_id=clone_id, timeout=timeout)


@pytest.fixture
def tutor_service(tutor_settings):
    from aivo.services.tutor import TutorService

    service = TutorService(settings=tutor_settings)
    worker = start_clone_worker(tutor_settings)
    yield service
    worker.stop()
    service.close()


PHOTOSYNTHESIS = ("Plants make food from sunlight. Leaves catch the light. Roots drink water. "
                  "The plant turns water and air into sugar.")


def clone_request(student_id: str, explanation: str = PHOTOSYNTHESIS, *, epochs: int | None = None,
                  disability: str | None = None):
    from aivo.tutor.schemas import (BaselineData, BaselineResponseIn, CloneStartRequest,
                                    PreferredExplanationIn, StudentProfile)

    return CloneStartRequest(
        student_id=student_id, epochs=epochs,
        student_profile=StudentProfile(grade="5", disability=disability),
        preferred_explanations=[PreferredExplanationIn(prompt="What is photosynthesis?", explanation=explanation),
                                PreferredExplanationIn(prompt="How do plants make food?", explanation=explanation)],
        baseline_data=BaselineData(responses=[BaselineResponseIn(
            question="What is 4 times 3?", response="7", correct=False,
            reference_answer="4 times 3 means 4 groups of 3, which is 12.")]))
