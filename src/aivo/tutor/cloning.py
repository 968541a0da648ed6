"""`Cloner`: POST /v1/clone/start and GET /v1/clone/{clone_id}/status behind the service.

`start` validates the request and turns it into training chats at once (bad input is a 422,
not a failed job), then queues the fine-tuning on the clone tracker's background thread:
load a training copy of the base model (kept for later clones, separate from the serving
model so serving never pauses), create the LoRA adapter, fine-tune it, and save it to the
registry. Serving picks the new adapter up on the learner's next request.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import TYPE_CHECKING

from aivo.tutor.adapter_store import AdapterTraining
from aivo.tutor.clone_jobs import CloneStatus, CloneTracker, Reporter
from aivo.tutor.clone_training import (BaselineAnswer, PreferredExplanation, build_clone_chats,
                                       train_lora)
from aivo.tutor.engine import (check_model_available, is_tiny_model, load_base_model, load_tokenizer,
                               model_fingerprint, model_source)
from aivo.tutor.options import CloneTrainingConfig, LoraSpec
from aivo.tutor.prompting import StudentContext
from aivo.tutor.schemas import CloneStartRequest, CloneStartResponse, CloneStatusResponse

if TYPE_CHECKING:
    from aivo.tutor.service import TutorService

log = logging.getLogger(__name__)


class Cloner:
    def __init__(self, service: "TutorService"):
        self.service = service
        self.settings = service.settings
        self.tracker = CloneTracker(root=self.settings.home / "tutor" / "clones", clock=service.clock)
        self._model_lock = threading.Lock()
        self._base = None  # (model, tokenizer) used for fine-tuning only
        source = model_source(self.settings)
        # seconds per optimizer step, refined after every clone (for estimated_time_seconds)
        self._seconds_per_step = 0.15 if is_tiny_model(source) else 3.0
        self._load_seconds = 2.0 if is_tiny_model(source) else 60.0

    def close(self) -> None:
        self.tracker.close(wait=False)

    def training_config(self, request: CloneStartRequest) -> CloneTrainingConfig:
        base = CloneTrainingConfig.from_settings(self.settings)
        lora = base.lora
        if request.lora is not None:
            lora = LoraSpec(r=request.lora.r or lora.r, alpha=request.lora.alpha or lora.alpha,
                            dropout=lora.dropout if request.lora.dropout is None else request.lora.dropout,
                            target_modules=tuple(request.lora.target_modules or lora.target_modules))
        return CloneTrainingConfig(epochs=request.epochs or base.epochs, learning_rate=base.learning_rate,
                                   batch_size=base.batch_size, max_seq_len=base.max_seq_len,
                                   seed=base.seed, lora=lora)

    def start(self, request: CloneStartRequest, *, tenant: str) -> CloneStartResponse:
        check_model_available(self.settings)
        self.service.store.check_ready()  # fail now, not after minutes of training
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
        chats = build_clone_chats(context=context, baseline=baseline, preferred=preferred)
        config = self.training_config(request)
        steps = config.epochs * math.ceil(len(chats) / config.batch_size)
        estimate = steps * self._seconds_per_step + (0.0 if self._base else self._load_seconds)
        learner_id = request.student_id

        def work(report: Reporter) -> tuple[str, dict]:
            report("loading_base_model", 2, "Loading the AIVO base model")
            model, tokenizer = self._training_base()
            report("creating_adapter", 8, f"Creating a LoRA adapter (r={config.lora.r}, alpha={config.lora.alpha})")

            def progress(fraction: float, message: str) -> None:
                report("fine_tuning", 10 + 80 * fraction, f"Personalizing the tutor with baseline data: {message}")

            with self._model_lock:
                trained = train_lora(base_model=model, tokenizer=tokenizer, chats=chats, config=config,
                                     progress=progress)
            self._seconds_per_step = 0.5 * self._seconds_per_step + 0.5 * trained.seconds / max(1, trained.steps)
            report("saving", 92, "Saving the adapter to the registry")
            ref = self.service.store.save(
                learner_id=learner_id, tenant=tenant, lora=config.lora, tensors=trained.tensors,
                base_fingerprint=model_fingerprint(model_source(self.settings)), base_model=self.service.model_name,
                training=AdapterTraining(epochs=config.epochs, batch_size=config.batch_size, samples=trained.samples,
                                         final_loss=trained.final_loss,
                                         details={"kind": "tutor_lora", "steps": trained.steps,
                                                  "first_loss": trained.first_loss, "seconds": trained.seconds,
                                                  "learning_rate": config.learning_rate}))
            return ref.sha256, {"steps": trained.steps, "samples": trained.samples,
                                "first_loss": trained.first_loss, "final_loss": trained.final_loss,
                                "seconds": trained.seconds}

        status = self.tracker.start(learner_id=learner_id, work=work, estimated_time_seconds=estimate)
        log.info("clone %s started for learner %s (%d examples, %d steps)", status.clone_id, learner_id,
                 len(chats), steps)
        return CloneStartResponse(clone_id=status.clone_id, student_id=learner_id, status="cloning_started",
                                  estimated_time_seconds=status.estimated_time_seconds)

    def status(self, clone_id: str) -> CloneStatusResponse:
        return to_response(self.tracker.status(clone_id))

    def wait(self, clone_id: str, *, timeout: float = 600.0) -> CloneStatusResponse:
        return to_response(self.tracker.wait(clone_id, timeout=timeout))

    def _training_base(self):
        with self._model_lock:
            if self._base is None:
                started = time.perf_counter()
                from aivo.tutor.engine import resolve_device

                source = model_source(self.settings)
                tokenizer = load_tokenizer(source, self.settings)
                model = load_base_model(source, self.settings, device=resolve_device(self.settings))
                self._base = (model, tokenizer)
                self._load_seconds = time.perf_counter() - started
            return self._base


def to_response(status: CloneStatus) -> CloneStatusResponse:
    return CloneStatusResponse(clone_id=status.clone_id, student_id=status.learner_id, status=status.status,
                               progress=status.progress, message=status.message,
                               adapter_sha256=status.adapter_sha256, error=status.error,
                               created_at=status.created_at, updated_at=status.updated_at)
