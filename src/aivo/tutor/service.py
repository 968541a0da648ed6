"""`TutorService`: the tutor's front door, shared by the API router and the CLI.

One instance per process holds one base model, the adapter cache, the batch worker, the
assessor and the clone tracker; everything heavy loads on first use (or on `load()`).
Each call runs the same pipeline: input safety check -> student-aware prompt -> the learner's
adapter (if any) -> batched generation -> output safety check -> accommodation shaping ->
readability against the learner's grade.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.config import Settings
from aivo.errors import NotFoundError
from aivo.registry.tables import DEFAULT_TENANT
from aivo.tutor import safety
from aivo.tutor.accommodations import shape_response
from aivo.tutor.adapter_store import AdapterRef, AdapterStore
from aivo.tutor.options import GenerationParams
from aivo.tutor.prompting import StudentContext, build_messages
from aivo.tutor.readability import readability_report
from aivo.tutor.schemas import (AssessRequest, AssessResponse, ChatCompletionRequest,
                                ChatCompletionResponse, CloneStartRequest, CloneStartResponse,
                                CloneStatusResponse, GenerateRequest, GenerateResponse, Readability,
                                SafetyInfo, StudentContextIn, TutorHealth, Usage)
from aivo.tutor.streams import Failed, Finished, TokenEvent, TokenStream

log = logging.getLogger(__name__)

BASE_MODEL_ALIAS = "aivo-tutor"  # chat `model` for the base model; "aivo-tutor:<learner>" for an adapter


def to_context(context: StudentContextIn | None) -> StudentContext:
    context = context or StudentContextIn()
    return StudentContext.build(grade=context.grade, subject=context.subject,
                                learning_style=context.learning_style,
                                accommodations=context.accommodation_names(), student_id=context.student_id)


class GenerationOutcome:
    """Collects one request's stream: raw text, output-safety verdict and the final event."""

    def __init__(self, stream: TokenStream):
        self.stream = stream
        self.raw = ""
        self.verdict = safety.SafetyVerdict(allowed=True)
        self.finished: Finished | None = None

    def take(self, event: TokenEvent) -> bool:
        """Add a token; False once the output filter trips (the request is then cancelled)."""
        if not self.verdict.allowed:
            return False
        self.raw += event.text
        verdict = safety.check_output(self.raw)
        if not verdict.allowed:
            self.verdict = verdict
            self.stream.cancel()
            log.warning("output blocked (%s) mid-generation", verdict.category)
            return False
        return True


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
        self._cloner = None
        self._seed_counter = 0

    # --- lifecycle -------------------------------------------------------------------------
    def load(self) -> None:
        """Load the model now (otherwise the first request does)."""
        self._components()

    def close(self) -> None:
        with self._lock:
            if self._batcher is not None:
                self._batcher.close()
            if self._cloner is not None:
                self._cloner.close()

    @property
    def model_loaded(self) -> bool:
        return self._engine is not None

    @property
    def store(self) -> AdapterStore:
        with self._lock:
            if self._store is None:
                from aivo.registry import open_registry
                from aivo.tutor.adapter_store import RegistryAdapterStore

                self._store = RegistryAdapterStore(open_registry(self.settings), clock=self.clock)
            return self._store

    def _components(self):
        with self._lock:
            if self._engine is None:
                from aivo.tutor.engine import check_model_available

                check_model_available(self.settings)  # fail fast, before importing torch
                from aivo.tutor.adapters import AdapterCache
                from aivo.tutor.batching import BatchGenerator
                from aivo.tutor.engine import TutorEngine
                from aivo.tutor.options import BatchingConfig

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
        from aivo.tutor.engine import model_display_name, model_source

        return model_display_name(model_source(self.settings))

    def health(self) -> TutorHealth:
        import torch

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
        with engine.lock:
            prompt_ids = engine.render_prompt(messages)
        return batcher.submit(prompt_ids=prompt_ids, adapter=adapter, params=params)

    def forget_learner(self, learner_id: str) -> bool:
        """Drop a learner's adapter from memory (call after deleting the learner)."""
        if self._batcher is None:
            return False
        return bool(self._batcher.call_in_worker(lambda: self._cache.evict(learner_id)))

    # --- /v1/generate ---------------------------------------------------------------------
    def _start_generate(self, request: GenerateRequest) -> tuple[StudentContext, safety.SafetyVerdict,
                                                                 AdapterRef | None, TokenStream | None]:
        context = to_context(request.context)
        verdict = safety.check_input(request.prompt)
        if not verdict.allowed:
            log.info("input blocked (%s)", verdict.category)
            return context, verdict, None, None
        adapter = self.learner_adapter(context.student_id)
        params = self.params(temperature=request.temperature, top_p=request.top_p,
                             max_new_tokens=request.max_new_tokens, seed=request.seed)
        stream = self.submit_messages(messages=build_messages(context=context, prompt=request.prompt),
                                      adapter=adapter, params=params)
        return context, verdict, adapter, stream

    def _generate_response(self, *, context: StudentContext, text: str, finished: Finished | None,
                           input_verdict: safety.SafetyVerdict,
                           output_verdict: safety.SafetyVerdict) -> GenerateResponse:
        blocked = not input_verdict.allowed or not output_verdict.allowed
        if not input_verdict.allowed:
            response, stage, category = input_verdict.refusal, "input", input_verdict.category
        elif not output_verdict.allowed:
            response, stage, category = output_verdict.refusal, "output", output_verdict.category
        else:
            response, stage, category = shape_response(text, context.accommodations), None, None
        report = readability_report(response, grade=context.grade, plain_language=context.plain_language)
        prompt_tokens = finished.prompt_tokens if finished else 0
        completion_tokens = finished.completion_tokens if finished else 0
        return GenerateResponse(
            response=response, model=self.model_name, adapter_used=finished.adapter if finished else None,
            tokens_used=prompt_tokens + completion_tokens,
            usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                        total_tokens=prompt_tokens + completion_tokens),
            readability=Readability(**{k: v for k, v in report.to_dict().items() if k != "syllables"}),
            finish_reason="content_filter" if blocked else (finished.finish_reason if finished else "stop"),
            safety=SafetyInfo(blocked=blocked, stage=stage, category=category),
            timestamp=self.clock.now())

    def generate(self, request: GenerateRequest) -> GenerateResponse:
        context, verdict, _adapter, stream = self._start_generate(request)
        if stream is None:
            return self._generate_response(context=context, text="", finished=None, input_verdict=verdict,
                                           output_verdict=safety.SafetyVerdict(allowed=True))
        outcome = GenerationOutcome(stream)
        for event in stream:
            if isinstance(event, TokenEvent):
                outcome.take(event)
            elif isinstance(event, Failed):
                raise_failed(event)
            else:
                outcome.finished = event
        return self._generate_response(context=context, text=outcome.raw, finished=outcome.finished,
                                       input_verdict=verdict, output_verdict=outcome.verdict)

    def generate_events(self, request: GenerateRequest) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """(event name, data) pairs for SSE: "token" per token, then one "done" with the usage.

        Validation, the input check and queueing happen now (errors raise here, before any
        response starts); the returned iterator then follows the generation. If the output
        filter trips mid-stream, no further tokens are sent and "done" carries the refusal in
        `response` with `safety.blocked` true: clients replace what they showed.
        """
        context, verdict, _adapter, stream = self._start_generate(request)
        return self._events(context, verdict, stream)

    async def _events(self, context: StudentContext, verdict: safety.SafetyVerdict,
                      stream: TokenStream | None) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        if stream is None:
            final = self._generate_response(context=context, text="", finished=None, input_verdict=verdict,
                                            output_verdict=safety.SafetyVerdict(allowed=True))
            yield "done", final.model_dump(mode="json")
            return
        outcome = GenerationOutcome(stream)
        try:
            async for event in stream.aiter():
                if isinstance(event, TokenEvent):
                    if outcome.take(event) and event.text:
                        yield "token", {"index": event.index, "token": event.text, "token_id": event.token_id}
                elif isinstance(event, Failed):
                    yield "error", {"detail": event.message}
                    return
                else:
                    outcome.finished = event
            final = self._generate_response(context=context, text=outcome.raw, finished=outcome.finished,
                                            input_verdict=verdict, output_verdict=outcome.verdict)
            yield "done", final.model_dump(mode="json")
        finally:
            if not stream.closed:  # the client went away: free the batch slot
                stream.cancel()

    # --- /v1/chat/completions (chat.py) ---------------------------------------------------
    def chat_completion(self, request: ChatCompletionRequest) -> ChatCompletionResponse:
        from aivo.tutor.chat import complete

        return complete(self, request)

    def chat_completion_chunks(self, request: ChatCompletionRequest) -> AsyncIterator[str]:
        """SSE `data:` payloads: chat.completion.chunk JSON objects, then "[DONE]".

        Errors (unknown model, bad input) raise here, before the stream starts."""
        from aivo.tutor.chat import stream_chunks

        return stream_chunks(self, request)

    # --- /v1/assess --------------------------------------------------------------------------
    def assessor(self):
        with self._lock:
            if self._assessor is None:
                from aivo.tutor.assessment import Assessor

                if self.settings.num_threads:
                    import torch

                    torch.set_num_threads(self.settings.num_threads)
                self._assessor = Assessor()
            return self._assessor

    def llm_feedback_enabled(self) -> bool:
        mode = self.settings.tutor_llm_feedback
        if mode != "auto":
            return mode == "on"
        # auto: only with a real model (not the tiny one); without any model the template writes it
        from pathlib import Path

        from aivo.tutor.engine import is_tiny_model, model_source

        source = model_source(self.settings)
        if not self.settings.brain_model and not Path(source).is_dir():
            return False
        return not is_tiny_model(source)

    def assess(self, request: AssessRequest) -> AssessResponse:
        from aivo.tutor.assessment import Rubric
        from aivo.tutor.feedback import feedback_messages, template_feedback

        criteria = request.criteria
        rubric = Rubric(reference_answers=tuple(a for a in criteria.reference_answers if a.strip()),
                        exemplars=tuple(a for a in criteria.exemplars if a.strip()),
                        keywords=tuple(k for k in criteria.rubric_keywords if k.strip()),
                        learning_objective=criteria.learning_objective, question=criteria.question)
        context = to_context(request.context) if request.context else StudentContext.build(
            grade=criteria.grade, subject=criteria.subject)
        score = self.assessor().score(answer=request.student_response, rubric=rubric)
        feedback = template_feedback(score=score, rubric=rubric, context=context)
        text, source = feedback.feedback, "template"
        if self.llm_feedback_enabled() and safety.check_input(request.student_response).allowed:
            messages = feedback_messages(answer=request.student_response, score=score, rubric=rubric,
                                         context=context)
            stream = self.submit_messages(messages=messages, adapter=self.learner_adapter(context.student_id),
                                          params=self.params(temperature=0.3, max_new_tokens=96))
            _tokens, finished = stream.result()
            written = finished.text.strip()
            if written and safety.check_output(written).allowed:
                text, source = shape_response(written, context.accommodations), "llm"
        return AssessResponse(
            correctness=score.correctness, understanding_level=score.understanding_level, feedback=text,
            strengths=feedback.strengths, areas_for_improvement=feedback.areas_for_improvement,
            next_steps=feedback.next_steps, similarity=score.similarity, keyword_coverage=score.keyword_coverage,
            matched_keywords=score.matched_keywords, missing_keywords=score.missing_keywords,
            on_topic=score.on_topic, feedback_source=source)

    # --- /v1/clone (cloning.py) --------------------------------------------------------------
    def cloner(self):
        with self._lock:
            if self._cloner is None:
                from aivo.tutor.cloning import Cloner

                self._cloner = Cloner(self)
            return self._cloner

    def start_clone(self, request: CloneStartRequest, *, tenant: str = DEFAULT_TENANT) -> CloneStartResponse:
        return self.cloner().start(request, tenant=tenant)

    def clone_status(self, clone_id: str) -> CloneStatusResponse:
        return self.cloner().status(clone_id)

    def now(self) -> datetime:
        return self.clock.now()


def raise_failed(event: Failed) -> None:
    from aivo.errors import AivoError

    if isinstance(event.error, AivoError):
        raise event.error
    raise RuntimeError(event.message)


def parse_model_name(model: str) -> str | None:
    """The learner id selected by a chat `model` name; None for the base model."""
    name = model.strip()
    if name in (BASE_MODEL_ALIAS, "base", ""):
        return None
    prefix = BASE_MODEL_ALIAS + ":"
    if name.startswith(prefix) and len(name) > len(prefix):
        return name[len(prefix):]
    raise NotFoundError(f"unknown model {model!r}: use {BASE_MODEL_ALIAS!r} or '{BASE_MODEL_ALIAS}:<learner id>'")
