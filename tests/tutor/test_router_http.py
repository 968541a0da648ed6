"""The tutor router mounted on a bare FastAPI app, served by uvicorn on a loopback port and
called with httpx: JSON endpoints, SSE streams parsed from the wire, errors and the guard."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request

from aivo.errors import ForbiddenError, NotFoundError

from .conftest import clone_request, make_settings, promote_main_version, start_clone_worker


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_OTHER_TENANT: set[str] = set()  # learners the guard answers like the app does for another tenant's


def _deny_mallory(request: Request, learner_id: str) -> None:
    if learner_id == "mallory":
        raise ForbiddenError("this key may not act for learner mallory")
    if learner_id in _OTHER_TENANT:
        raise NotFoundError("learner not found (no learner with this id in this key's tenant)")


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model_dir):
    from aivo.api.routers.tutor import create_tutor_router
    from aivo.services.tutor import TutorService

    settings = make_settings(tmp_path_factory.mktemp("http") / "home", tiny_model_dir)
    promote_main_version(settings)
    app = FastAPI()
    app.state.tutor_service = TutorService(settings=settings)
    app.include_router(create_tutor_router(authorize_learner=_deny_mallory, tenant_of=lambda r: "school-1"))
    worker = start_clone_worker(settings)
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uv.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}", app.state.tutor_service
    uv.should_exit = True
    thread.join(10)
    worker.stop()
    app.state.tutor_service.close()


def sse_events(response: httpx.Response) -> list[tuple[str, str]]:
    """(event, data) pairs from a text/event-stream, parsed line by line as it arrives."""
    events, name, data = [], "message", []
    for line in response.iter_lines():
        if line == "":
            if data:
                events.append((name, "\n".join(data)))
            name, data = "message", []
        elif line.startswith(":"):
            continue  # comment / keep-alive ping
        elif line.startswith("event:"):
            name = line[len("event:"):].strip()
        elif line.startswith("data:"):
            data.append(line[len("data:"):].lstrip(" "))
    if data:
        events.append((name, "\n".join(data)))
    return events


def test_generate(server):
    base, _ = server
    r = httpx.post(f"{base}/v1/generate", json={"prompt": "Explain photosynthesis in simple terms",
                                                "context": {"student_id": "s1", "grade": "5", "subject": "Science",
                                                            "learning_style": "visual", "disability": "adhd"},
                                                "temperature": 0.7, "max_new_tokens": 16}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) >= {"response", "model", "adapter_used", "tokens_used", "usage", "readability", "timestamp"}
    assert body["readability"]["target_grade"] == 5 and body["usage"]["completion_tokens"] <= 16


def test_generate_stream_token_events_in_order_then_usage(server):
    base, _ = server
    with httpx.stream("POST", f"{base}/v1/generate/stream", json={
            "prompt": "What is a fraction?", "context": {"grade": 3}, "temperature": 0, "max_new_tokens": 12},
            timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r)
    names = [name for name, _ in events]
    assert names[-1] == "done" and set(names[:-1]) == {"token"} and len(names) >= 2
    tokens = [json.loads(data) for name, data in events if name == "token"]
    assert [t["index"] for t in tokens] == sorted(t["index"] for t in tokens)
    done = json.loads(events[-1][1])
    usage = done["usage"]
    assert usage["completion_tokens"] >= len(tokens) and usage["total_tokens"] == usage["prompt_tokens"] + \
        usage["completion_tokens"]
    assert "".join(t["token"] for t in tokens).strip() == done["explanation"].strip()
    # the non-streamed answer with the same seed is the same text
    same = httpx.post(f"{base}/v1/generate", json={"prompt": "What is a fraction?", "context": {"grade": 3},
                                                   "temperature": 0, "max_new_tokens": 12}, timeout=60).json()
    assert same["response"] == done["response"]


def test_stream_refusal_still_ends_with_a_done_event(server):
    base, _ = server
    with httpx.stream("POST", f"{base}/v1/generate/stream", json={"prompt": "i want to hurt myself"},
                      timeout=60) as r:
        events = sse_events(r)
    assert [name for name, _ in events] == ["done"]
    done = json.loads(events[0][1])
    assert done["safety"] == {"blocked": True, "stage": "input", "category": "self_harm", "detector": "rules"}
    assert "988" in done["response"] and done["usage"]["total_tokens"] == 0


def test_chat_completions_json_and_stream(server):
    base, _ = server
    body = {"model": "aivo-tutor", "messages": [{"role": "user", "content": "What is gravity?"}],
            "max_tokens": 10, "temperature": 0}
    r = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 200, r.text
    completion = r.json()
    assert completion["object"] == "chat.completion" and completion["choices"][0]["message"]["role"] == "assistant"
    with httpx.stream("POST", f"{base}/v1/chat/completions",
                      json={**body, "stream": True, "stream_options": {"include_usage": True}}, timeout=60) as r:
        assert r.status_code == 200
        events = sse_events(r)
    payloads = [data for _, data in events]
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == completion["choices"][0]["message"]["content"]
    finals = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert len(finals) == 1 and chunks[-1]["choices"] == [] and chunks[-1]["usage"] == completion["usage"]


def test_assess(server):
    base, _ = server
    r = httpx.post(f"{base}/v1/assess", json={
        "student_response": "Plants make food from sunlight",
        "criteria": {"subject": "Science", "grade": "5", "learning_objective": "Understand photosynthesis",
                     "reference_answers": ["Plants use sunlight, water and carbon dioxide to make sugar."],
                     "rubric_keywords": ["sunlight", "water", "carbon dioxide|co2"]}}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert 0 <= body["correctness"] <= 100 and body["understanding_level"] in ("excellent", "good", "developing",
                                                                               "beginning")
    assert body["feedback"] and body["strengths"] and body["areas_for_improvement"] and body["next_steps"]


def test_clone_start_and_status_then_serve_through_chat(server):
    base, _ = server
    body = clone_request("http-kid").model_dump()
    r = httpx.post(f"{base}/v1/clone/start", json=body, timeout=60)
    assert r.status_code == 202, r.text
    started = r.json()
    assert started["status"] == "cloning_started" and started["estimated_time_seconds"] > 0
    deadline = time.monotonic() + 120
    while True:
        status = httpx.get(f"{base}/v1/clone/{started['clone_id']}/status", timeout=10).json()
        assert 0 <= status["progress"] <= 100
        if status["status"] in ("completed", "failed") or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert status["status"] == "completed" and status["progress"] == 100, status
    r = httpx.post(f"{base}/v1/chat/completions", json={
        "model": "aivo-tutor:http-kid", "messages": [{"role": "user", "content": "What is photosynthesis?"}],
        "max_tokens": 8}, timeout=60)
    assert r.status_code == 200 and r.json()["model"] == "aivo-tutor:http-kid"


@pytest.mark.parametrize("path,body,code,fragment", [
    ("/v1/chat/completions", {"model": "aivo-tutor:ghost", "messages": [{"role": "user", "content": "hi"}]},
     404, "no tutor adapter"),
    ("/v1/chat/completions", {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "stream": True},
     404, "unknown model"),
    ("/v1/chat/completions", {"messages": [{"role": "assistant", "content": "hi"}]}, 400, "from the user"),
    ("/openai/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "frequency_penalty": 1},
     400, "frequency_penalty"),
    ("/openai/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}]},
     400, "'tools' is not supported"),
    ("/openai/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "n": 2}, 400, "only n=1"),
    ("/v1/generate", {"prompt": "hi", "context": {"grade": "13"}}, 422, "grade"),
    ("/v1/generate/stream", {"prompt": "hi", "context": {"accommodations": ["telepathy"]}}, 422, "accommodation"),
    ("/v1/generate", {"prompt": ""}, 422, "prompt"),
    ("/v1/generate", {"prompt": "hi", "context": {"student_id": "mallory"}}, 403, "mallory"),
    ("/v1/clone/start", {"student_id": "mallory"}, 403, "mallory"),
    ("/v1/clone/start", {"student_id": "nodata"}, 422, "nothing to fine-tune on"),
    ("/v1/assess", {"student_response": "x", "criteria": {}}, 422, "reference answers"),
])
def test_errors_are_clean_4xx(server, path, body, code, fragment):
    base, _ = server
    r = httpx.post(f"{base}{path}", json=body, timeout=60)
    assert r.status_code == code, r.text
    assert fragment in r.text


def test_unknown_clone_is_404(server):
    base, _ = server
    assert httpx.get(f"{base}/v1/clone/clone_nope/status", timeout=10).status_code == 404


def test_another_tenants_clone_is_answered_like_a_missing_one(server):
    """Issue 14: the two 404s were worded differently, which told one tenant that another
    tenant's clone exists."""
    base, _ = server
    r = httpx.post(f"{base}/v1/clone/start", json=clone_request("elsewhere-kid").model_dump(), timeout=60)
    assert r.status_code == 202, r.text
    clone_id = r.json()["clone_id"]
    _OTHER_TENANT.add("elsewhere-kid")
    try:
        hidden = httpx.get(f"{base}/v1/clone/{clone_id}/status", timeout=10)
        missing = httpx.get(f"{base}/v1/clone/clone_nope/status", timeout=10)
    finally:
        _OTHER_TENANT.discard("elsewhere-kid")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["detail"].replace(clone_id, "ID") == missing.json()["detail"].replace("clone_nope", "ID")


def test_health(server):
    base, _ = server
    body = httpx.get(f"{base}/v1/tutor/health", timeout=10).json()
    assert body["model_loaded"] and body["device"] == "cpu" and body["adapter_cache_capacity"] == 2


def test_official_openai_client(server):
    """The official `openai` client against /openai/v1: models, content parts, the developer role,
    stop sequences, streaming, and OpenAI-shaped errors for what AIVO does not implement."""
    import openai

    base, _ = server
    client = openai.OpenAI(base_url=f"{base}/openai/v1", api_key="unused-by-this-test-app", max_retries=0)
    assert [m.id for m in client.models.list()] == ["aivo-tutor"]
    assert client.models.retrieve("aivo-tutor").id == "aivo-tutor"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o")

    # A question of the tiny model's own corpus: off it, the fixture's 300-thousand-parameter model may
    # write only whitespace at temperature 0 (it did for "What is a fraction?" once the corpus's shaped
    # explanations changed), and the stop checks below need text to cut.
    messages = [{"role": "developer", "content": "You are a tutor."},
                {"role": "user", "content": [{"type": "text", "text": "What is photosynthesis?"}]}]
    full = client.chat.completions.create(model="aivo-tutor", messages=messages, max_tokens=16, temperature=0)
    text = full.choices[0].message.content
    assert full.object == "chat.completion" and text and full.usage.completion_tokens > 0
    assert client.chat.completions.create(model="aivo-tutor", messages=messages, max_tokens=4, temperature=0,
                                          response_format={"type": "text"}, logprobs=False).choices

    # stop: the output ends before the first occurrence of the stop sequence, which is not included
    stop = text.strip()[3:6]
    stopped = client.chat.completions.create(model="aivo-tutor", messages=messages, max_tokens=16, temperature=0,
                                             stop=[stop])
    assert stopped.choices[0].finish_reason == "stop"
    assert stop not in stopped.choices[0].message.content and text.startswith(stopped.choices[0].message.content)

    chunks = list(client.chat.completions.create(model="aivo-tutor", messages=messages, max_tokens=16,
                                                 temperature=0, stream=True, stop=stop,
                                                 stream_options={"include_usage": True}))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == stopped.choices[0].message.content and chunks[-1].usage is not None

    for extra, fragment in (({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
                            ({"response_format": {"type": "json_object"}}, "response_format"),
                            ({"logprobs": True}, "logprobs"), ({"n": 2}, "n=1")):
        # (response_format {"type": "text"} and logprobs false are accepted: they ask for what AIVO does)
        with pytest.raises(openai.BadRequestError) as raised:
            client.chat.completions.create(model="aivo-tutor", messages=messages, max_tokens=4, **extra)
        assert fragment in raised.value.message and raised.value.status_code == 400
    with pytest.raises(openai.BadRequestError, match="text"):
        client.chat.completions.create(model="aivo-tutor", max_tokens=4, messages=[
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}])
