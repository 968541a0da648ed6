"""Cloning a learner's tutor: a trainer job with progress, adapter stored in the registry."""

from __future__ import annotations

import time

import pytest

from aivo.errors import ConflictError, DataError, NotFoundError

from .conftest import clone_request, make_settings, wait_for_clone


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

    first = wait_for_clone(tutor_service, tutor_service.start_clone(
        clone_request("kid-2", "Cats sleep a lot. Cats like warm places.")).clone_id)
    answer_1 = ask(tutor_service, student="kid-2", max_new_tokens=20).response
    second = wait_for_clone(tutor_service, tutor_service.start_clone(
        clone_request("kid-2", "Trains run on rails. Trains carry people far.")).clone_id)
    assert first.adapter_sha256 != second.adapter_sha256
    assert tutor_service.store.latest("kid-2").sha256 == second.adapter_sha256
    answer_2 = ask(tutor_service, student="kid-2", max_new_tokens=20).response
    assert answer_2 != answer_1


def test_lora_shape_and_epochs_are_configurable(tutor_service):
    from aivo.tutor.schemas import LoraIn

    request = clone_request("kid-3", epochs=2)
    request.lora = LoraIn(r=2, alpha=4, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    status = wait_for_clone(tutor_service, tutor_service.start_clone(request).clone_id)
    tensors, metadata = tutor_service.store.registry.store.load_tensors(status.adapter_sha256)
    assert metadata["lora"]["r"] == 2 and len(metadata["lora"]["target_modules"]) == 4
    assert any("o_proj.lora_A" in name for name in tensors)
    assert all(t.shape[0] == 2 for name, t in tensors.items() if "lora_A" in name)


def test_unknown_target_module_fails_the_job_with_a_message(tutor_service):
    from aivo.tutor.schemas import LoraIn

    request = clone_request("kid-4", epochs=1)
    request.lora = LoraIn(target_modules=["no_such_proj"])
    status = wait_for_clone(tutor_service, tutor_service.start_clone(request).clone_id)
    assert status.status == "failed" and "no_such_proj" in status.error


def test_bad_requests_fail_before_any_job(tutor_service, aivo_home, tiny_model_dir):
    from aivo.tutor.schemas import CloneStartRequest
    from aivo.services.tutor import TutorService

    with pytest.raises(DataError, match="nothing to fine-tune on"):
        tutor_service.start_clone(CloneStartRequest(student_id="empty"))
    with pytest.raises(NotFoundError):
        tutor_service.clone_status("clone_doesnotexist")
    fresh_home = aivo_home.parent / "no_main"
    service = TutorService(settings=make_settings(fresh_home, tiny_model_dir))
    with pytest.raises(ConflictError, match="active Main Brain version"):
        service.start_clone(clone_request("kid-5"))
    service.close()


def test_a_clone_is_a_trainer_job_with_state_in_the_database(tutor_service, tutor_settings):
    """The job row is the state (any process answers the status); the request is kept with the
    learner; the job kind refuses to be queued through POST /trainer/jobs."""
    from aivo.registry import open_registry
    from aivo.services.jobs import fetch_job, find_jobs, submit_job
    from aivo.services.tutor_clones import clone_job, clone_status

    started = tutor_service.start_clone(clone_request("kid-7", epochs=1), tenant="district-9")
    done = wait_for_clone(tutor_service, started.clone_id)
    registry = open_registry(tutor_settings)
    job = clone_job(registry=registry, clone_id=started.clone_id)
    assert job.kind == "tutor_clone" and job.status == "succeeded" and job.learner_id == "kid-7"
    assert job.tenant == "district-9" and job.result["adapter_sha256"] == done.adapter_sha256
    assert job.config["request"]["student_id"] == "kid-7" and job.datasheet["intended_use"]
    assert clone_status(registry=registry, clone_id=started.clone_id) == done  # read back from the row alone
    assert find_jobs(registry=registry, kind="tutor_clone").total == 1
    assert fetch_job(registry=registry, job_id=job.id).progress["stage"] == "succeeded"
    with pytest.raises(DataError, match="kind must be one of"):
        submit_job(registry=registry, settings=tutor_settings, kind="tutor_clone", created_by="tests",
                   datasheet=job.datasheet)


def test_a_queued_clone_can_be_cancelled_and_reads_as_failed(tutor_settings):
    """No worker runs here: the job waits in the queue, and cancelling it is immediate."""
    from aivo.registry import open_registry
    from aivo.services.jobs import cancel
    from aivo.services.tutor_clones import clone_job, clone_status, start_clone

    registry = open_registry(tutor_settings)
    started = start_clone(registry=registry, settings=tutor_settings, request=clone_request("kid-8"),
                          tenant="default")
    waiting = clone_status(registry=registry, clone_id=started.clone_id)
    assert waiting.status == "queued" and waiting.progress == 0 and "worker" in waiting.message
    cancel(registry=registry, job_id=clone_job(registry=registry, clone_id=started.clone_id).id)
    status = clone_status(registry=registry, clone_id=started.clone_id)
    assert status.status == "failed" and "cancel" in status.error


def test_a_running_clone_stops_when_cancelled(tutor_service, tutor_settings, monkeypatch):
    """The cancel reaches a clone in the middle of fine-tuning. The tiny model trains in a moment,
    so the trainer is held at its first step (where the job's own stop check runs, as it does
    between every two steps) until the cancel has gone through, or 60 s at most: a clone that
    ignores the cancel then completes and the test fails."""
    import threading

    import aivo.services.tutor_clones as tutor_clones
    from aivo.registry import open_registry
    from aivo.services.jobs import cancel
    from aivo.services.tutor_clones import clone_job

    fine_tuning = threading.Event()
    real_train_lora = tutor_clones.train_lora

    def held_train_lora(*, progress, **kwargs):
        def held_progress(fraction, message):
            if not fine_tuning.is_set():
                fine_tuning.set()
                until = time.monotonic() + 60
                while time.monotonic() < until:  # raises TrainingStopped once the cancel arrived
                    progress(fraction, message)
                    time.sleep(0.02)
            progress(fraction, message)

        return real_train_lora(progress=held_progress, **kwargs)

    monkeypatch.setattr(tutor_clones, "train_lora", held_train_lora)
    registry = open_registry(tutor_settings)
    started = tutor_service.start_clone(clone_request("kid-9", epochs=50))
    deadline = time.monotonic() + 300
    while not fine_tuning.wait(0.1):
        status = tutor_service.clone_status(started.clone_id)
        assert status.status not in ("completed", "failed"), status  # ended before fine-tuning began
        assert time.monotonic() < deadline, f"the clone never started fine-tuning: {status}"
    job = cancel(registry=registry, job_id=clone_job(registry=registry, clone_id=started.clone_id).id)
    assert job.cancel_requested
    status = wait_for_clone(tutor_service, started.clone_id, timeout=120)
    assert status.status == "failed" and status.error == "cancelled on request" and status.adapter_sha256 is None
    assert tutor_service.store.latest("kid-9") is None  # nothing was saved
