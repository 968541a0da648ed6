"""An upstream engine for larger models: any OpenAI-compatible chat-completions server.

With `AIVO_TUTOR_ENGINE=openai`, generation goes to `AIVO_TUTOR_ENGINE_URL` (vLLM, the
llama.cpp server, Ollama, text-generation-inference, ...), streamed, instead of the model in
this process. Everything around generation stays AIVO's: safety on input and output, the
student-aware prompt, retrieval from the content library, accommodation shaping, readability,
alerts.

Per-learner adapters: such engines serve LoRA adapters under their own model names (vLLM
`--lora-modules name=path` or `/v1/load_lora_adapter`, the llama.cpp server's `--lora`, ...).
A learner with an active tutor adapter in the registry is requested as the model
`AIVO_TUTOR_ENGINE_ADAPTER_PREFIX + <learner pseudonym>` (default `aivo-<pseudonym>`); others
get `AIVO_TUTOR_ENGINE_MODEL`. `aivo tutor export-adapter` writes a learner's adapter as a PEFT
folder that those engines load.

Requests run concurrently (a thread each, at most `AIVO_TUTOR_MAX_BATCH_SIZE` x 2 in flight):
batching is the engine's job. Tokens arrive as the engine sends them; cancelling a stream
closes its HTTP response.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from aivo.config import Settings
from aivo.errors import AivoError, ServiceConfigError
from aivo.tutor.adapter_store import AdapterRef
from aivo.tutor.engine import model_fingerprint, model_source
from aivo.tutor.options import GenerationParams
from aivo.tutor.streams import Failed, Finished, TokenEvent, TokenStream

log = logging.getLogger(__name__)


class UpstreamError(AivoError):
    """The upstream engine failed or is unreachable."""

    exit_code = 2
    http_status = 502


def engine_fingerprint(settings: Settings) -> str:
    """Adapters trained locally on the same base model (AIVO_TUTOR_MODEL) match the engine's model;
    without a local copy, the engine's model name identifies the base."""
    source = model_source(settings)
    if Path(source).is_dir():
        return model_fingerprint(source)
    return hashlib.sha256(f"openai:{settings.tutor_engine_model}".encode()).hexdigest()[:16]


@dataclass
class RemoteStats:
    batches: int = 0  # requests sent (the engine batches them itself)
    rows: int = 0
    failures: int = 0

    @property
    def mean_batch_size(self) -> float:
        return 1.0 if self.batches else 0.0


@dataclass
class RemoteEngine:
    """Stands where TutorEngine stands in the service (device, fingerprint, lock)."""

    url: str
    model: str
    fingerprint: str
    adapter_prefix: str
    device: str = "remote"
    is_tiny: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> "RemoteEngine":
        if not settings.tutor_engine_url or not settings.tutor_engine_model:
            raise ServiceConfigError("AIVO_TUTOR_ENGINE=openai needs AIVO_TUTOR_ENGINE_URL (e.g. http://gpu1:8000/v1) "
                                     "and AIVO_TUTOR_ENGINE_MODEL (the base model's name on that server)")
        return cls(url=settings.tutor_engine_url.rstrip("/"), model=settings.tutor_engine_model,
                   fingerprint=engine_fingerprint(settings), adapter_prefix=settings.tutor_engine_adapter_prefix)

    def model_for(self, adapter: AdapterRef | None) -> str:
        return f"{self.adapter_prefix}{adapter.learner_id}" if adapter is not None else self.model


class RemoteGenerator:
    """`submit_chat` -> TokenStream, one streamed HTTP request per call."""

    def __init__(self, *, engine: RemoteEngine, settings: Settings):
        self.engine = engine
        self.stats = RemoteStats()
        headers = {"Authorization": f"Bearer {settings.tutor_engine_api_key}"} if settings.tutor_engine_api_key else {}
        self._client = httpx.Client(base_url=engine.url, headers=headers,
                                    timeout=httpx.Timeout(settings.tutor_engine_timeout_s, connect=10.0))
        self._pool = ThreadPoolExecutor(max_workers=max(2, 2 * settings.tutor_max_batch_size),
                                        thread_name_prefix="aivo-tutor-upstream")
        self._closed = False

    def close(self) -> None:
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()

    def call_in_worker(self, fn, timeout: float = 60.0):
        return fn()  # nothing here is owned by a worker thread

    def submit_chat(self, *, messages: list[dict[str, str]], adapter: AdapterRef | None, params: GenerationParams,
                    stop: tuple[str, ...] = ()) -> TokenStream:
        if self._closed:
            raise RuntimeError("the tutor's upstream engine client is closed")
        stream = TokenStream()
        body = {"model": self.engine.model_for(adapter), "messages": messages, "stream": True,
                "stream_options": {"include_usage": True}, "max_tokens": params.max_new_tokens,
                "temperature": params.temperature, "top_p": params.top_p, "seed": params.seed}
        if stop:
            body["stop"] = list(stop)
        self.stats.batches += 1
        self.stats.rows += 1
        self._pool.submit(self._run, body, stream, adapter)
        return stream

    def _run(self, body: dict, stream: TokenStream, adapter: AdapterRef | None) -> None:
        pieces: list[str] = []
        reason, usage = "length", {}
        try:
            with self._client.stream("POST", "/chat/completions", json=body) as response:
                if response.status_code >= 400:
                    detail = response.read().decode("utf-8", "replace")[:300]
                    raise UpstreamError(f"the tutor engine answered {response.status_code} for model "
                                        f"{body['model']!r}: {detail}")
                for line in response.iter_lines():
                    if stream.cancelled:
                        reason = "cancelled"
                        break
                    if not line.startswith("data:"):
                        continue
                    data = line[len("data:"):].strip()
                    if data == "[DONE]":
                        break
                    chunk = json.loads(data)
                    if chunk.get("error"):
                        raise UpstreamError(f"the tutor engine failed: {chunk['error']}")
                    usage = chunk.get("usage") or usage
                    for choice in chunk.get("choices") or []:
                        text = (choice.get("delta") or {}).get("content") or ""
                        if text:
                            pieces.append(text)
                            stream.push(TokenEvent(index=len(pieces) - 1, token_id=-1, text=text))
                        if choice.get("finish_reason"):
                            reason = "stop" if choice["finish_reason"] == "stop" else "length"
        except UpstreamError as exc:
            self.stats.failures += 1
            stream.push(Failed(exc.message, exc))
            return
        except (httpx.HTTPError, json.JSONDecodeError) as exc:
            self.stats.failures += 1
            error = UpstreamError(f"the tutor engine at {self.engine.url} failed: {exc}")
            stream.push(Failed(error.message, error))
            return
        stream.push(Finished(finish_reason=reason, prompt_tokens=int(usage.get("prompt_tokens") or 0),
                             completion_tokens=int(usage.get("completion_tokens") or len(pieces)),
                             text="".join(pieces), adapter=adapter.learner_id if adapter else None, batch_size=1))
