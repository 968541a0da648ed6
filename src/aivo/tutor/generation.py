"""One explanation request end to end (/v1/generate, `aivo tutor generate`).

input safety (rules + classifier; a self-harm message raises an alert) -> lessons retrieved
from the school's content library -> student-aware prompt quoting them -> the learner's
adapter -> batched generation, checked while it streams (stop sequences, output safety) ->
accommodation shaping -> readability against the learner's grade -> the answer, naming the
lessons it used (or saying that it comes from the model alone).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from aivo.errors import AivoError, NotFoundError
from aivo.tutor.accommodations import shape_response
from aivo.tutor.content import Hit, grounded_messages, source_note
from aivo.tutor.frontdoor import Tutor
from aivo.tutor.prompting import StudentContext, build_messages
from aivo.tutor.readability import readability_report
from aivo.tutor.safety import OutputMonitor, SafetyVerdict
from aivo.tutor.schemas import (GenerateRequest, GenerateResponse, Readability, SafetyInfo, SourceOut,
                                StudentContextIn, Usage)
from aivo.tutor.streams import Failed, Finished, StopMatcher, TokenEvent, TokenStream

log = logging.getLogger(__name__)

ALLOWED = SafetyVerdict(allowed=True)


def to_context(context: StudentContextIn | None) -> StudentContext:
    context = context or StudentContextIn()
    return StudentContext.build(grade=context.grade, subject=context.subject,
                                learning_style=context.learning_style,
                                accommodations=context.accommodation_names(), student_id=context.student_id)


class GenerationOutcome:
    """Follows one request's stream: stop sequences, the output safety monitor, the final event.

    `take` returns the text to send for a token ("" while held back), or None once the output
    was blocked; `end` releases what was held back and runs the final checks."""

    def __init__(self, stream: TokenStream, monitor: OutputMonitor, stop: tuple[str, ...] = ()):
        self.stream = stream
        self.monitor = monitor
        self.matcher = StopMatcher(stop)
        self.raw = ""
        self.verdict = ALLOWED
        self.finished: Finished | None = None

    def take(self, event: TokenEvent) -> str | None:
        if not self.verdict.allowed:
            return None
        if self.matcher.stopped:
            return ""
        piece = self.matcher.feed(event.text)
        if self.matcher.stopped:
            self.stream.cancel()  # the rest would be discarded: free the batch row
        return self._check(piece)

    def _check(self, piece: str) -> str | None:
        if not piece:
            return ""
        self.raw += piece
        verdict = self.monitor.feed(piece)
        if not verdict.allowed:
            self.verdict = verdict
            self.stream.cancel()
            log.warning("output blocked (%s, %s) mid-generation", verdict.category, verdict.source)
            return None
        return piece

    def end(self, finished: Finished) -> str | None:
        self.finished = finished
        if not self.verdict.allowed:
            return None
        piece = self._check(self.matcher.flush())
        if self.verdict.allowed:
            verdict = self.monitor.finish()
            if not verdict.allowed:
                self.verdict = verdict
                return None
        return piece

    @property
    def finish_reason(self) -> str:
        if not self.verdict.allowed:
            return "content_filter"
        if self.matcher.stopped:
            return "stop"
        return self.finished.finish_reason if self.finished else "stop"


@dataclass
class PreparedGeneration:
    context: StudentContext
    verdict: SafetyVerdict
    hits: list[Hit] = field(default_factory=list)
    quote: str = ""  # the lesson's sentences that open the answer (AIVO_TUTOR_CONTENT_QUOTE)
    stream: TokenStream | None = None
    outcome: GenerationOutcome | None = None


def prepare(service: "Tutor", request: GenerateRequest) -> PreparedGeneration:
    """Everything before the first token: validation, input safety, retrieval, queueing."""
    context = to_context(request.context)
    verdict = service.safety_filter.check_input(request.prompt)
    if not verdict.allowed:
        log.info("input blocked (%s, %s)", verdict.category, verdict.source)
        service.report_blocked_input(learner_id=context.student_id, verdict=verdict, text=request.prompt)
        return PreparedGeneration(context=context, verdict=verdict)
    hits = service.retrieve(request.prompt, context=context)
    quote = service.content.quote(request.prompt, hits, sentences=service.settings.tutor_content_quote) \
        if hits else ""
    messages = grounded_messages(build_messages(context=context, prompt=request.prompt), hits,
                                 layout=service.settings.tutor_content_layout)
    params = service.params(temperature=request.temperature, top_p=request.top_p,
                            max_new_tokens=request.max_new_tokens, seed=request.seed)
    stream = service.submit_messages(messages=messages, adapter=service.learner_adapter(context.student_id),
                                     params=params)
    return PreparedGeneration(context=context, verdict=verdict, hits=hits, quote=quote, stream=stream,
                              outcome=GenerationOutcome(stream, service.safety_filter.monitor()))


def build_response(service: "Tutor", prepared: PreparedGeneration) -> GenerateResponse:
    context, outcome = prepared.context, prepared.outcome
    finished = outcome.finished if outcome else None
    note = None
    if not prepared.verdict.allowed:
        body, stage, category = prepared.verdict.refusal, "input", prepared.verdict.category
    elif not outcome.verdict.allowed:
        body, stage, category = outcome.verdict.refusal, "output", outcome.verdict.category
    else:
        written = f"{prepared.quote}\n\n{outcome.raw.strip()}" if prepared.quote else outcome.raw
        body, stage, category = shape_response(written, context.accommodations), None, None
        note = source_note(prepared.hits)
    blocked = stage is not None
    report = readability_report(body, grade=context.grade, plain_language=context.plain_language)
    prompt_tokens = finished.prompt_tokens if finished else 0
    completion_tokens = finished.completion_tokens if finished else 0
    return GenerateResponse(
        response=body + (f"\n\n{note}" if note else ""), explanation=body, source_note=note,
        grounded=bool(prepared.hits) and not blocked,
        sources=[SourceOut(ref=i + 1, lesson_id=h.passage.lesson_id, passage_id=h.passage.passage_id,
                           title=h.passage.title, subject=h.passage.subject, grade=h.passage.grade,
                           skill=h.passage.skill, score=h.score) for i, h in enumerate(prepared.hits)]
        if not blocked else [],
        model=service.model_name, adapter_used=finished.adapter if finished else None,
        tokens_used=prompt_tokens + completion_tokens,
        usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                    total_tokens=prompt_tokens + completion_tokens),
        readability=Readability(**{k: v for k, v in report.to_dict().items() if k != "syllables"}),
        finish_reason="content_filter" if blocked else outcome.finish_reason,
        safety=SafetyInfo(blocked=blocked, stage=stage, category=category,
                          detector=(prepared.verdict if stage == "input" else outcome.verdict).source
                          if blocked else None),
        timestamp=service.clock.now())


BASE_MODEL_ALIAS = "aivo-tutor"  # chat `model` for the base model; "aivo-tutor:<learner>" for an adapter


def raise_failed(event: Failed) -> None:
    """Re-raise a generation's failure: the AivoError itself, anything else as a RuntimeError."""
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
