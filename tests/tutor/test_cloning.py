"""Cloning a learner's tutor: background job with progress, adapter stored in the registry."""

from __future__ import annotations

import json
import time

import pytest

from aivo.errors import ConflictError, DataError, NotFoundError
from aivo.tutor.clone_jobs import CloneTracker

from .conftest import clone_request, make_settings


def test_clone_runs_in_the_background_and_lands_in_the_registry(tutor_service, tutor_settings):
    from aivo.registry import get_learner_model, learner_model_history, open_registry

    started = tutor_service.start_clone(clone_request("kid-1", disability="adhd"), tenant="district-9")
    assert started.status == "cloning_started" and started.clone_id.startswith("clone_")
    assert started.estimated_time_seconds > 0
    seen = set()
    while True:
        status = tutor_service.clone_status(started.clone_id)
        seen.add(status.status)
        if status.status in ("completed", "failed"):
            break
        time.sleep(0.02)
    assert status.status == "completed" and status.progress == 100, status
    assert seen <= {"queued", "loading_base_model", "creating_adapter", "fine_tuning", "saving", "completed"}
    registry = open_registry(tutor_settings)
    with registry.session(read_only=True) as session:
        model = get_learner_model(session=session, learner_id="kid-1", kind="tutor")
        history = learner_model_history(session=session, learner_id="kid-1", kind="tutor")
    assert model.artifact_sha256 == status.adapter_sha256 and model.status == "active"
    assert model.tenant == "district-9" and model.source_version == "aivo-main-v1"
    assert model.details["lora"] == {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
    assert len(history.sessions) == 1 and history.sessions[0].samples == 4  # 2 preferred + 2 from baseline
    tensors, metadata = registry.store.load_tensors(status.adapter_sha256)
    assert metadata["learner_id"] == "kid-1" and all("lora_" in name for name in tensors)
    # only the adapter is stored: a small fraction of the base model
    base_params = tutor_service.engine.num_parameters
    assert sum(t.numel() for t in tensors.values()) < 0.1 * base_params


def test_recloning_replaces_the_served_adapter(tutor_service):
    from tests.tutor.test_generation import ask

    first = tutor_service.cloner().wait(tutor_service.start_clone(
        clone_request("kid-2", "Cats sleep a lot. Cats like warm places.")).clone_id)
    answer_1 = ask(tutor_service, student="kid-2", max_new_tokens=20).response
    second = tutor_service.cloner().wait(tutor_service.start_clone(
        clone_request("kid-2", "Trains run on rails. Trains carry people far.")).clone_id)
    assert first.adapter_sha256 != second.adapter_sha256
    assert tutor_service.store.latest("kid-2").sha256 == second.adapter_sha256
    answer_2 = ask(tutor_service, student="kid-2", max_new_tokens=20).response
    assert answer_2 != answer_1


def test_lora_shape_and_epochs_are_configurable(tutor_service):
    from aivo.tutor.schemas import LoraIn

    request = clone_request("kid-3", epochs=2)
    request.lora = LoraIn(r=2, alpha=4, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    status = tutor_service.cloner().wait(tutor_service.start_clone(request).clone_id)
    tensors, metadata = tutor_service.store.registry.store.load_tensors(status.adapter_sha256)
    assert metadata["lora"]["r"] == 2 and len(metadata["lora"]["target_modules"]) == 4
    assert any("o_proj.lora_A" in name for name in tensors)
    assert all(t.shape[0] == 2 for name, t in tensors.items() if "lora_A" in name)


def test_unknown_target_module_fails_the_job_with_a_message(tutor_service):
    from aivo.tutor.schemas import LoraIn

    request = clone_request("kid-4", epochs=1)
    request.lora = LoraIn(target_modules=["no_such_proj"])
    status = tutor_service.cloner().wait(tutor_service.start_clone(request).clone_id)
    assert status.status == "failed" and "no_such_proj" in status.error


def test_bad_requests_fail_before_any_job(tutor_service, aivo_home, tiny_model_dir):
    from aivo.tutor.schemas import CloneStartRequest
    from aivo.tutor.service import TutorService

    with pytest.raises(DataError, match="nothing to fine-tune on"):
        tutor_service.start_clone(CloneStartRequest(student_id="empty"))
    with pytest.raises(NotFoundError):
        tutor_service.clone_status("clone_doesnotexist")
    fresh_home = aivo_home.parent / "no_main"
    service = TutorService(settings=make_settings(fresh_home, tiny_model_dir))
    with pytest.raises(ConflictError, match="active Main Brain version"):
        service.start_clone(clone_request("kid-5"))
    service.close()


def test_a_job_interrupted_by_a_restart_reads_as_failed(tmp_path):
    root = tmp_path / "clones"
    root.mkdir()
    (root / "clone_abc123.json").write_text(json.dumps({
        "clone_id": "clone_abc123", "learner_id": "kid", "status": "fine_tuning", "progress": 40, "message": "...",
        "created_at": "2025-01-01T00:00:00+00:00", "updated_at": "2025-01-01T00:00:00+00:00",
        "estimated_time_seconds": 10.0}))
    tracker = CloneTracker(root=root)
    status = tracker.status("clone_abc123")
    assert status.status == "failed" and status.error == "interrupted" and "restart" in status.message
    tracker.close()
