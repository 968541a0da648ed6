"""Tutor clone use case: a learner's LoRA adapter fine-tuned on their own data, as a trainer job
of kind `tutor_clone` (POST /v1/clone/start, GET /v1/clone/{clone_id}/status, `aivo tutor clone`).

`start_clone` validates the request and turns it into training chats at once (bad input is a
422, not a failed job), then queues the job: its state is a row of `trainer_jobs` (with the
request, kept with the learner and erased with them), it is leased by the worker that runs it,
cancelled with DELETE /trainer/jobs/{id} and reaped when its worker dies, like every other job.
A worker (`aivo worker run`, or the embedded worker of `aivo serve`) runs it: load a training copy
of the base model (kept for later clones, separate from any serving model), create the LoRA
adapter, fine-tune it, and save it to the registry. Serving picks the new adapter up on the
learner's next request.

A clone's progress reads as the stages

    queued -> loading_base_model -> creating_adapter -> fine_tuning -> saving -> completed | failed
"""

from __future__ import annotations

import logging
import math
import secrets
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa

from aivo.brain.train import TrainingStopped
from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.config import Settings
from aivo.errors import DataError, NotFoundError
from aivo.registry import Registry, ensure_learner
from aivo.registry.tables import DEFAULT_TENANT, Learner, TrainerJob
from aivo.training.context import JobContext, JobOutcome
from aivo.training.datasheet import Datasheet
from aivo.training.jobs import TrainerJobRecord, create_job, get_job, list_jobs
from aivo.training.kinds import JobKind, JobKinds
from aivo.training.worker import Worker, make_worker_id
from aivo.tutor.adapter_store import AdapterTraining, RegistryAdapterStore
from aivo.tutor.clone_training import BaselineAnswer, PreferredExplanation, build_clone_chats, train_lora
from aivo.tutor.engine import (check_model_available, is_tiny_model, load_base_model, load_tokenizer,
                               model_display_name, model_fingerprint, model_source, resolve_device)
from aivo.tutor.options import CloneTrainingConfig, LoraSpec
from aivo.tutor.prompting import StudentContext
from aivo.tutor.schemas import CloneStartRequest, CloneStartResponse, CloneStatusResponse

log = logging.getLogger(__name__)

KIND = "tutor_clone"
MODEL_PREFIX = "tutor-clone:"  # the job's model_id: one per clone, so a learner may queue several
RUNNING_STAGES = ("loading_base_model", "creating_adapter", "fine_tuning", "saving")
WAITING_MESSAGE = "Waiting for a trainer worker (aivo worker run, or the worker of aivo serve)"


def clone_datasheet() -> Datasheet:
    """What a clone trains on: the data the request brings."""
    return Datasheet(
        source="the learner's baseline answers and preferred explanations, sent with the clone request "
               "(POST /v1/clone/start or aivo tutor clone)",
        license="the deployment's own learner data, used under its data-processing agreement with the schools",
        collection_process="a baseline assessment and explanations the learner preferred, collected by the "
                           "school's system and sent for this learner only",
        pii_handling="the learner is named by a keyed-HMAC pseudonym; the request is stored with this job and "
                     "erased with the learner; it trains that learner's own adapter and nothing else",
        intended_use="a personal tutor adapter that explains in ways this learner understood; not for grading, "
                     "placement or any high-stakes decision",
    )


@dataclass(frozen=True)
class ClonePlan:
    """A validated clone request: its chats and training configuration (rebuilt by the worker from
    the job's config)."""

    clone_id: str
    learner_id: str  # pseudonym
    request: CloneStartRequest
    config: CloneTrainingConfig
    chats: list[list[dict[str, str]]]

    @property
    def steps(self) -> int:
        return self.config.epochs * math.ceil(len(self.chats) / self.config.batch_size)

    def job_config(self) -> dict[str, Any]:
        return {"clone_id": self.clone_id, "request": self.request.model_dump(mode="json"),
                "training": asdict(self.config)}

    @classmethod
    def from_request(cls, request: CloneStartRequest, *, settings: Settings, clone_id: str) -> "ClonePlan":
        return cls(clone_id=clone_id, learner_id=request.student_id, request=request,
                   config=training_config(request, settings), chats=clone_chats(request))

    @classmethod
    def from_job(cls, job: TrainerJobRecord) -> "ClonePlan":
        try:
            request = CloneStartRequest.model_validate(job.config["request"])
            training = dict(job.config["training"])
            lora = dict(training.pop("lora"))
            config = CloneTrainingConfig(**training, lora=LoraSpec(**{**lora, "target_modules":
                                                                      tuple(lora["target_modules"])}))
            clone_id = str(job.config["clone_id"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"tutor clone job {job.id} has an unreadable config: {exc}") from None
        return cls(clone_id=clone_id, learner_id=request.student_id, request=request, config=config,
                   chats=clone_chats(request))


def training_config(request: CloneStartRequest, settings: Settings) -> CloneTrainingConfig:
    base = CloneTrainingConfig.from_settings(settings)
    lora = base.lora
    if request.lora is not None:
        lora = LoraSpec(r=request.lora.r or lora.r, alpha=request.lora.alpha or lora.alpha,
                        dropout=lora.dropout if request.lora.dropout is None else request.lora.dropout,
                        target_modules=tuple(request.lora.target_modules or lora.target_modules))
    return CloneTrainingConfig(epochs=request.epochs or base.epochs, learning_rate=base.learning_rate,
                               batch_size=base.batch_size, max_seq_len=base.max_seq_len, seed=base.seed, lora=lora)


def clone_chats(request: CloneStartRequest) -> list[list[dict[str, str]]]:
    """The learner's data as training chats (DataError when there is nothing to fine-tune on)."""
    profile = request.student_profile
    context = StudentContext.build(
        grade=profile.grade, subject=profile.subject, learning_style=profile.learning_style,
        accommodations=list(profile.accommodations) + ([profile.disability] if profile.disability else []),
        student_id=request.student_id)
    baseline = [BaselineAnswer(question=r.question, response=r.response, correct=r.correct, score=r.score,
                               reference_answer=r.reference_answer, explanation=r.explanation)
                for r in request.baseline_data.responses]
    preferred = [PreferredExplanation(prompt=p.prompt, explanation=p.explanation)
                 for p in request.preferred_explanations]
    return build_clone_chats(context=context, baseline=baseline, preferred=preferred)


# --- front doors ---------------------------------------------------------------------------------

def start_clone(*, registry: Registry, settings: Settings, request: CloneStartRequest, tenant: str,
                created_by: str = "tutor", clock: Clock = SYSTEM_CLOCK) -> CloneStartResponse:
    """Validate `request` (its `student_id` is the learner's pseudonym) and queue its clone job.
    ConflictError when there is no active Main Brain (adapters are registered against it),
    DataError when the request holds nothing to fine-tune on."""
    check_model_available(settings)
    RegistryAdapterStore(registry, clock=clock).check_ready()  # fail now, not after minutes of training
    plan = ClonePlan.from_request(request, settings=settings, clone_id="clone_" + secrets.token_hex(8))
    estimate = estimated_seconds(registry=registry, settings=settings, steps=plan.steps)

    def work(session) -> TrainerJobRecord:
        ensure_learner(session=session, learner_id=plan.learner_id, tenant=tenant, clock=clock)
        learner_pk = session.scalar(sa.select(Learner.id).where(Learner.pseudonym == plan.learner_id))
        return create_job(session=session, kind=KIND, model_id=MODEL_PREFIX + plan.clone_id,
                          datasheet=clone_datasheet(), created_by=created_by, config=plan.job_config(),
                          reason=f"tutor clone {plan.clone_id}", tenant=tenant, learner_pk=learner_pk,
                          clock=clock)

    job = registry.run(work)
    log.info("clone %s queued as trainer job %d for learner %s (%d examples, %d steps)", plan.clone_id, job.id,
             plan.learner_id, len(plan.chats), plan.steps)
    return CloneStartResponse(clone_id=plan.clone_id, student_id=plan.learner_id, status="cloning_started",
                              estimated_time_seconds=round(estimate, 1))


def clone_job(*, registry: Registry, clone_id: str) -> TrainerJobRecord:
    if not clone_id.replace("_", "").isalnum():
        raise NotFoundError(f"no clone job {clone_id!r}")

    def read(session) -> TrainerJobRecord:
        job_id = session.scalar(sa.select(TrainerJob.id).where(TrainerJob.model_id == MODEL_PREFIX + clone_id,
                                                               TrainerJob.kind == KIND))
        if job_id is None:
            raise NotFoundError(f"no clone job {clone_id!r}")
        return get_job(session=session, job_id=job_id)

    return registry.run(read, read_only=True)


def clone_status(*, registry: Registry, clone_id: str) -> CloneStatusResponse:
    """The clone's progress, read from its trainer job (from any process)."""
    return to_status(clone_job(registry=registry, clone_id=clone_id))


def to_status(job: TrainerJobRecord) -> CloneStatusResponse:
    stage = job.progress.get("stage")
    fraction = job.progress.get("fraction") or 0.0
    message = job.progress.get("message") or WAITING_MESSAGE
    error = None
    if job.status == "succeeded":
        status, progress, message = "completed", 100, "Personal tutor ready"
    elif job.status in ("failed", "cancelled"):
        error = job.error or job.status
        status, message = "failed", f"Cloning failed: {error}"
        progress = min(99, round(100 * fraction))
    elif job.status == "running" and stage in RUNNING_STAGES:
        status, progress = stage, min(99, round(100 * fraction))
    else:  # queued, requeued, or claimed and not yet loading
        status, progress, message = "queued", 0, WAITING_MESSAGE if job.status == "queued" else message
    return CloneStatusResponse(clone_id=str(job.config.get("clone_id", job.model_id[len(MODEL_PREFIX):])),
                               student_id=job.learner_id or "", status=status, progress=progress, message=message,
                               adapter_sha256=job.result.get("adapter_sha256"), error=error,
                               created_at=job.created_at, updated_at=job.updated_at)


def wait_for_clone(*, registry: Registry, clone_id: str, timeout: float = 600.0,
                   poll_s: float = 0.05) -> CloneStatusResponse:
    """Block until the clone is completed or failed (CLI and tests)."""
    deadline = time.monotonic() + timeout
    while True:
        status = clone_status(registry=registry, clone_id=clone_id)
        if status.status in ("completed", "failed"):
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"clone {clone_id} still {status.status} after {timeout}s")
        time.sleep(poll_s)


def clone_now(*, registry: Registry, settings: Settings, request: CloneStartRequest, tenant: str = DEFAULT_TENANT,
              created_by: str = "tutor", clock: Clock = SYSTEM_CLOCK,
              on_progress: Callable[[CloneStatusResponse], None] | None = None,
              poll_s: float = 0.2) -> CloneStatusResponse:
    """Start a clone and run its job in this process (`aivo tutor clone`), reporting progress from
    the job row; if another worker takes it first, follow that one. Interrupting the wait (Ctrl-C)
    shuts this worker down: the job goes back to the queue for any other worker."""
    started = start_clone(registry=registry, settings=settings, request=request, tenant=tenant,
                          created_by=created_by, clock=clock)
    job = clone_job(registry=registry, clone_id=started.clone_id)
    worker = Worker(registry=registry, settings=settings, job_kinds=JobKinds([TutorCloneKind()]), clock=clock,
                    worker_id=make_worker_id("tutor-clone"))
    runner = threading.Thread(target=worker.run_job, args=(job.id,), name=f"aivo-clone-{job.id}", daemon=True)
    runner.start()
    try:
        while True:
            status = clone_status(registry=registry, clone_id=started.clone_id)
            if on_progress is not None:
                on_progress(status)
            if status.status in ("completed", "failed"):
                runner.join()
                return status
            time.sleep(poll_s)
    except BaseException:
        worker.shutdown()
        runner.join(30)
        raise


def estimated_seconds(*, registry: Registry, settings: Settings, steps: int) -> float:
    """Steps x seconds per step, plus loading the base model, from the latest finished clones
    (defaults for the tiny test model or a real one until there are some)."""
    source = model_source(settings)
    seconds_per_step, load_seconds = (0.15, 2.0) if is_tiny_model(source) else (3.0, 60.0)
    page = registry.run(lambda session: list_jobs(session=session, kind=KIND, status="succeeded", limit=5),
                        read_only=True)
    done = [j.result for j in page.jobs if j.result.get("steps") and j.result.get("base_model") == source]
    if done:
        seconds_per_step = statistics.median(r["train_seconds"] / r["steps"] for r in done)
        load_seconds = float(done[0].get("load_seconds", load_seconds))
    return steps * seconds_per_step + load_seconds


# --- the `tutor_clone` trainer job -----------------------------------------------------------------

class TutorCloneKind(JobKind):
    """Runs a clone job. Keeps the training copy of the base model between clones (one per
    process, reloaded when AIVO_BRAIN_MODEL names another model)."""

    name = KIND

    def __init__(self) -> None:
        self._lock = threading.Lock()  # one fine-tuning at a time on the shared training copy
        self._base: tuple[str, Any, Any] | None = None  # (source, model, tokenizer)

    def check_config(self, *, config: dict[str, Any], settings: Settings) -> None:
        raise DataError("tutor clones are started with POST /v1/clone/start (aivo tutor clone)")

    def validate(self, ctx: JobContext) -> dict[str, Any]:
        if ctx.job.learner_id is None:
            raise DataError("this tutor clone job has no learner any more (erased?)")
        plan = ClonePlan.from_job(ctx.job)
        check_model_available(ctx.settings)
        RegistryAdapterStore(ctx.registry, clock=ctx.clock).check_ready()
        return {"examples": len(plan.chats), "steps": plan.steps}

    def run(self, ctx: JobContext) -> JobOutcome:
        plan = ClonePlan.from_job(ctx.job)
        config, settings = plan.config, ctx.settings

        def report(stage: str, percent: float, message: str) -> None:
            if ctx.should_stop():  # cancelled, lease lost or shutting down: stop at the next step
                raise TrainingStopped(f"clone stopped while {stage}")
            ctx.report(stage, percent / 100, message)

        report("loading_base_model", 2, "Loading the AIVO base model")
        source, model, tokenizer, load_seconds = self._training_base(settings)
        report("creating_adapter", 8, f"Creating a LoRA adapter (r={config.lora.r}, alpha={config.lora.alpha})")

        def progress(fraction: float, message: str) -> None:
            report("fine_tuning", 10 + 80 * fraction, f"Personalizing the tutor with baseline data: {message}")

        with self._lock:
            trained = train_lora(base_model=model, tokenizer=tokenizer, chats=plan.chats, config=config,
                                 progress=progress)
        report("saving", 92, "Saving the adapter to the registry")
        ref = RegistryAdapterStore(ctx.registry, clock=ctx.clock).save(
            learner_id=ctx.job.learner_id, tenant=ctx.job.tenant or DEFAULT_TENANT, lora=config.lora,
            tensors=trained.tensors, base_fingerprint=model_fingerprint(source),
            base_model=model_display_name(source),
            training=AdapterTraining(epochs=config.epochs, batch_size=config.batch_size, samples=trained.samples,
                                     final_loss=trained.final_loss,
                                     details={"kind": "tutor_lora", "steps": trained.steps,
                                              "first_loss": trained.first_loss, "seconds": trained.seconds,
                                              "learning_rate": config.learning_rate}))
        log.info("clone %s: adapter %s saved for learner %s", plan.clone_id, ref.sha256[:12], ctx.job.learner_id)
        return JobOutcome(result={"clone_id": plan.clone_id, "adapter_sha256": ref.sha256, "steps": trained.steps,
                                  "samples": trained.samples, "first_loss": trained.first_loss,
                                  "final_loss": trained.final_loss, "train_seconds": trained.seconds,
                                  "load_seconds": round(load_seconds, 3), "base_model": source})

    def _training_base(self, settings: Settings) -> tuple[str, Any, Any, float]:
        """(source, model, tokenizer, seconds spent loading now: 0 when already loaded)."""
        source = model_source(settings)
        with self._lock:
            if self._base is None or self._base[0] != source:
                started = time.perf_counter()
                tokenizer = load_tokenizer(source, settings)
                model = load_base_model(source, settings, device=resolve_device(settings))
                self._base = (source, model, tokenizer)
                return source, model, tokenizer, time.perf_counter() - started
            return source, self._base[1], self._base[2], 0.0
