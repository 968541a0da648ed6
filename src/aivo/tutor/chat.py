"""OpenAI-compatible chat completions on top of the tutor service.

`model` picks the adapter: "aivo-tutor" is the base model, "aivo-tutor:<learner id>" that
learner's adapter (404 if the learner has none). Without a system message, the student-aware
system prompt is added (from the `aivo_context` extension, or defaults). Safety checks run on
the last user message and on the output; a blocked answer is the kind refusal with
`finish_reason` "content_filter". Streaming sends `chat.completion.chunk` objects and ends
with `[DONE]`; with `stream_options.include_usage` a last chunk carries the usage.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

from aivo.errors import ConflictError, NotFoundError
from aivo.tutor import safety
from aivo.tutor.accommodations import shape_response
from aivo.tutor.adapter_store import AdapterRef
from aivo.tutor.frontdoor import Tutor
from aivo.tutor.generation import GenerationOutcome, parse_model_name, raise_failed, to_context
from aivo.tutor.prompting import StudentContext, build_system_prompt
from aivo.tutor.schemas import (ChatChoice, ChatChoiceMessage, ChatCompletionRequest, ChatCompletionResponse,
                                Usage)
from aivo.tutor.streams import Failed, TokenEvent, TokenStream


def _prepare(service: "Tutor", request: ChatCompletionRequest):
    """(context, messages, adapter, input verdict): everything needed before generating."""
    learner_id = parse_model_name(request.model)
    if learner_id is not None and request.learner_id is not None:
        learner_id = request.learner_id  # as the API resolved it (a raw id becomes its pseudonym)
    adapter: AdapterRef | None = None
    if learner_id is not None:
        adapter = service.learner_adapter(learner_id)
        if adapter is None:
            if service.store.latest(learner_id) is not None:  # asked for by name: say why it is not used
                raise ConflictError(f"the tutor adapter of learner {learner_id} was trained on another base model "
                                    "than the one now served (AIVO_BRAIN_MODEL changed): clone it again "
                                    "(POST /v1/clone/start)")
            raise NotFoundError(f"learner {learner_id} has no tutor adapter yet: clone it first "
                                "(POST /v1/clone/start)")
    context = to_context(request.aivo_context) if request.aivo_context else StudentContext()
    messages = [{"role": m.chat_role, "content": m.text} for m in request.messages]
    if messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": build_system_prompt(context)})
    verdict = service.safety_filter.check_input(messages[-1]["content"])
    if not verdict.allowed:
        service.report_blocked_input(learner_id=context.student_id or learner_id, verdict=verdict,
                                     text=messages[-1]["content"])
    return context, messages, adapter, verdict


def _submit(service: "Tutor", request: ChatCompletionRequest, messages, adapter) -> TokenStream:
    params = service.params(temperature=request.temperature, top_p=request.top_p,
                            max_new_tokens=request.max_completion_tokens or request.max_tokens,
                            seed=request.seed)
    return service.submit_messages(messages=messages, adapter=adapter, params=params)


def _final_text(raw: str, context: StudentContext, shaped: bool) -> str:
    return shape_response(raw, context.accommodations) if shaped else raw.strip()


def _outcome(service: "Tutor", request: ChatCompletionRequest, stream: TokenStream):
    return GenerationOutcome(stream, service.safety_filter.monitor(), stop=request.stop_sequences)


def complete(service: "Tutor", request: ChatCompletionRequest) -> ChatCompletionResponse:
    context, messages, adapter, verdict = _prepare(service, request)
    created = int(service.now().timestamp())
    completion_id = "chatcmpl-" + uuid.uuid4().hex[:24]
    if not verdict.allowed:
        return ChatCompletionResponse(
            id=completion_id, created=created, model=request.model,
            choices=[ChatChoice(message=ChatChoiceMessage(content=verdict.refusal), finish_reason="content_filter")],
            usage=Usage(prompt_tokens=0, completion_tokens=0, total_tokens=0))
    stream = _submit(service, request, messages, adapter)
    outcome = _outcome(service, request, stream)
    for event in stream:
        if isinstance(event, TokenEvent):
            outcome.take(event)
        elif isinstance(event, Failed):
            raise_failed(event)
        else:
            outcome.end(event)
    finished = outcome.finished
    if outcome.verdict.allowed:
        content = _final_text(outcome.raw, context, shaped=request.aivo_context is not None)
    else:
        content = outcome.verdict.refusal
    return ChatCompletionResponse(
        id=completion_id, created=created, model=request.model,
        choices=[ChatChoice(message=ChatChoiceMessage(content=content), finish_reason=outcome.finish_reason)],
        usage=Usage(prompt_tokens=finished.prompt_tokens, completion_tokens=finished.completion_tokens,
                    total_tokens=finished.prompt_tokens + finished.completion_tokens))


def _chunk(completion_id: str, created: int, model: str, delta: dict, finish_reason: str | None) -> str:
    return json.dumps({"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]})


def stream_chunks(service: "Tutor", request: ChatCompletionRequest) -> AsyncIterator[str]:
    """Prepare and queue now (errors raise here); the iterator then yields the chunks."""
    context, messages, adapter, verdict = _prepare(service, request)
    stream = _submit(service, request, messages, adapter) if verdict.allowed else None
    return _chunks(service, request, verdict, stream)


async def _chunks(service: "Tutor", request: ChatCompletionRequest, verdict: safety.SafetyVerdict,
                  stream: TokenStream | None) -> AsyncIterator[str]:
    created = int(service.now().timestamp())
    completion_id = "chatcmpl-" + uuid.uuid4().hex[:24]
    model = request.model
    include_usage = bool(request.stream_options and request.stream_options.include_usage)
    yield _chunk(completion_id, created, model, {"role": "assistant", "content": ""}, None)
    usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    if stream is None:
        yield _chunk(completion_id, created, model, {"content": verdict.refusal}, None)
        yield _chunk(completion_id, created, model, {}, "content_filter")
    else:
        outcome = _outcome(service, request, stream)
        try:
            async for event in stream.aiter():
                if isinstance(event, TokenEvent):
                    text = outcome.take(event)
                    if text:
                        yield _chunk(completion_id, created, model, {"content": text}, None)
                elif isinstance(event, Failed):
                    yield json.dumps({"error": {"message": event.message, "type": "server_error"}})
                    yield "[DONE]"
                    return
                else:
                    text = outcome.end(event)
                    if text:
                        yield _chunk(completion_id, created, model, {"content": text}, None)
        finally:
            if not stream.closed:
                stream.cancel()
        finished = outcome.finished
        if not outcome.verdict.allowed:
            # Tokens already sent are withdrawn by this refusal (the client should replace them).
            yield _chunk(completion_id, created, model, {"content": "\n\n" + outcome.verdict.refusal}, None)
        yield _chunk(completion_id, created, model, {}, outcome.finish_reason)
        usage = {"prompt_tokens": finished.prompt_tokens, "completion_tokens": finished.completion_tokens,
                 "total_tokens": finished.prompt_tokens + finished.completion_tokens}
    if include_usage:
        yield json.dumps({"id": completion_id, "object": "chat.completion.chunk", "created": created,
                          "model": model, "choices": [], "usage": usage})
    yield "[DONE]"
