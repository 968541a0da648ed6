"""AIVO_TUTOR_ENGINE=openai: generation through a real OpenAI-compatible HTTP server.

The test starts its own small engine (FastAPI + uvicorn on a loopback port) that implements
/v1/chat/completions with and without streaming, the way vLLM or the llama.cpp server do, and
records which model each request named, so the learner-adapter routing is checked too."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from aivo.config import Settings
from aivo.tutor.schemas import ChatCompletionRequest, GenerateRequest, StudentContextIn

from .conftest import promote_main_version

ANSWER = "Plants use sunlight, water and carbon dioxide to make sugar. They give off oxygen."


def _engine_app(seen: list[dict]) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        seen.append(body)
        if body["model"] == "missing-adapter":
            return JSONResponse({"error": {"message": "model not found"}}, status_code=404)
        words = ANSWER.split(" ")[: body.get("max_tokens", 100)]
        if not body.get("stream"):
            return {"id": "x", "object": "chat.completion", "model": body["model"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": " ".join(words)},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 42, "completion_tokens": len(words), "total_tokens": 42 + len(words)}}

        async def events():
            yield "data: " + json.dumps({"choices": [{"index": 0, "delta": {"role": "assistant"}}]}) + "\n\n"
            for i, word in enumerate(words):
                text = word if i == 0 else " " + word
                yield "data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": text}}]}) + "\n\n"
            yield "data: " + json.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}) + "\n\n"
            yield "data: " + json.dumps({"choices": [], "usage": {"prompt_tokens": 42,
                                                                  "completion_tokens": len(words)}}) + "\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


@pytest.fixture(scope="module")
def engine_server():
    seen: list[dict] = []
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(_engine_app(seen), host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the test engine did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}/v1", seen
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def remote_service(aivo_home, engine_server):
    from aivo.services.tutor import TutorService

    url, seen = engine_server
    settings = Settings(home=aivo_home, tutor_engine="openai", tutor_engine_url=url, tutor_engine_model="big-model",
                        tutor_safety_classifier=False)
    promote_main_version(settings)
    service = TutorService(settings=settings)
    seen.clear()
    yield service, seen
    service.close()


def test_generation_goes_to_the_engine_and_keeps_aivos_pipeline(remote_service):
    service, seen = remote_service
    out = service.generate(GenerateRequest(prompt="How do plants make food?", max_new_tokens=50, seed=3,
                                           context=StudentContextIn(grade="5", accommodations=["adhd"])))
    assert seen[-1]["model"] == "big-model" and seen[-1]["stream"] is True and seen[-1]["max_tokens"] == 50
    assert seen[-1]["messages"][0]["role"] == "system" and "grade 5" in seen[-1]["messages"][0]["content"]
    assert out.explanation.startswith("1. Plants use sunlight") and "\n2. " in out.explanation  # shaped for ADHD
    assert out.usage.prompt_tokens == 42 and out.model == "big-model (upstream)"
    assert "model alone" in out.response  # no content library here
    assert service.health().device == "remote"


def test_input_safety_never_reaches_the_engine(remote_service):
    service, seen = remote_service
    out = service.generate(GenerateRequest(prompt="how do I make a pipe bomb"))
    assert out.safety.blocked and seen == []


def test_learner_adapter_is_requested_by_name_and_stop_is_honoured(remote_service):
    import torch

    from aivo.tutor.adapter_store import AdapterTraining
    from aivo.tutor.options import LoraSpec
    from aivo.tutor.remote_engine import engine_fingerprint

    service, seen = remote_service
    service.store.save(learner_id="kid-7", tenant="default", lora=LoraSpec(r=2, alpha=4),
                       tensors={"w.lora_A.weight": torch.zeros(2, 4)},
                       base_fingerprint=engine_fingerprint(service.settings), base_model="big-model",
                       training=AdapterTraining(epochs=1, batch_size=1, samples=1, final_loss=0.1, details={}))
    request = ChatCompletionRequest(model="aivo-tutor:kid-7", stop=["carbon"],
                                    messages=[{"role": "user", "content": "How do plants make food?"}])
    out = service.chat_completion(request)
    assert seen[-1]["model"] == "aivo-kid-7"
    assert out.choices[0].message.content == "Plants use sunlight, water and" and out.choices[0].finish_reason == "stop"


def test_engine_errors_are_clear(aivo_home, engine_server):
    from aivo.errors import AivoError, ServiceConfigError
    from aivo.services.tutor import TutorService

    with pytest.raises(ServiceConfigError, match="AIVO_TUTOR_ENGINE_URL"):
        TutorService(settings=Settings(home=aivo_home, tutor_engine="openai")).generate(
            GenerateRequest(prompt="hi"))
    url, _ = engine_server
    service = TutorService(settings=Settings(home=aivo_home, tutor_engine="openai", tutor_engine_url=url,
                                             tutor_engine_model="missing-adapter", tutor_safety_classifier=False))
    try:
        with pytest.raises(AivoError, match="answered 404") as raised:
            service.generate(GenerateRequest(prompt="What is a noun?"))
        assert raised.value.http_status == 502
    finally:
        service.close()
    dead = TutorService(settings=Settings(home=aivo_home, tutor_engine="openai", tutor_engine_url="http://127.0.0.1:9/v1",
                                          tutor_engine_model="m", tutor_safety_classifier=False))
    try:
        with pytest.raises(AivoError, match="failed"):
            dead.generate(GenerateRequest(prompt="What is a noun?"))
    finally:
        dead.close()
