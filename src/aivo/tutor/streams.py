"""Token streams: how generated tokens travel from the batch worker thread to a consumer.

The worker pushes events; the consumer reads them either blocking (`for event in stream`,
CLI and sync service calls) or from asyncio (`async for event in stream.aiter()`, the SSE
endpoints). A stream ends with exactly one `Finished` or `Failed` event.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Literal, Union

from aivo.errors import AivoError

FinishReason = Literal["stop", "length", "cancelled"]


class CancelFlag:
    """Set from any thread; read by the decoding loop between steps."""

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set


@dataclass(frozen=True)
class TokenEvent:
    index: int  # 0-based position among the generated tokens
    token_id: int
    text: str  # the new text this token completes ("" while a multi-byte character is pending)


@dataclass(frozen=True)
class Finished:
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    text: str  # the whole raw completion
    adapter: str | None  # the learner whose adapter produced it, None for the base model
    batch_size: int  # how many requests shared the decoding batch


@dataclass(frozen=True)
class Failed:
    message: str
    error: BaseException | None = None  # re-raised by `result()` when it is an AivoError


StreamEvent = Union[TokenEvent, Finished, Failed]


class TokenStream:
    def __init__(self) -> None:
        self._events: deque[StreamEvent] = deque()
        self._cond = threading.Condition()
        self._async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self._closed = False
        self.cancel_flag = CancelFlag()

    # --- producer side (worker thread) ----------------------------------------------------
    def push(self, event: StreamEvent) -> None:
        with self._cond:
            if self._closed:
                return
            self._events.append(event)
            if isinstance(event, (Finished, Failed)):
                self._closed = True
            self._cond.notify_all()
            waiters = list(self._async_waiters)
        for loop, flag in waiters:
            try:
                loop.call_soon_threadsafe(flag.set)
            except RuntimeError:  # the consumer's loop is gone
                pass

    @property
    def closed(self) -> bool:
        return self._closed

    # --- consumer side -------------------------------------------------------------------
    def cancel(self) -> None:
        """Ask the worker to stop this request at its next decoding step."""
        self.cancel_flag.set()

    @property
    def cancelled(self) -> bool:
        return self.cancel_flag.is_set()

    def __iter__(self) -> Iterator[StreamEvent]:
        while True:
            with self._cond:
                while not self._events:
                    self._cond.wait()
                event = self._events.popleft()
            yield event
            if isinstance(event, (Finished, Failed)):
                return

    async def aiter(self) -> AsyncIterator[StreamEvent]:
        loop = asyncio.get_running_loop()
        flag = asyncio.Event()
        with self._cond:
            self._async_waiters.append((loop, flag))
        try:
            while True:
                flag.clear()  # clear before looking, so a push after the look sets it again
                with self._cond:
                    batch = list(self._events)
                    self._events.clear()
                if not batch:
                    await flag.wait()
                    continue
                for event in batch:
                    yield event
                    if isinstance(event, (Finished, Failed)):
                        return
        finally:
            with self._cond:
                self._async_waiters.remove((loop, flag))

    def result(self) -> tuple[list[TokenEvent], Finished]:
        """Block until the stream ends; raise RuntimeError if it failed."""
        tokens: list[TokenEvent] = []
        for event in self:
            if isinstance(event, TokenEvent):
                tokens.append(event)
            elif isinstance(event, Failed):
                if isinstance(event.error, AivoError):
                    raise event.error
                raise RuntimeError(event.message)
            else:
                return tokens, event
        raise RuntimeError("stream ended without a final event")  # pragma: no cover


class StopMatcher:
    """OpenAI-style stop sequences on streamed text.

    `feed` returns the text that may be emitted now: a suffix that could be the start of a stop
    sequence is held back until the next piece shows whether it is one. When a stop sequence
    appears, the text before it is released, `stopped` becomes true and nothing more is emitted
    (the stop sequence itself is never part of the output).
    """

    def __init__(self, stops: tuple[str, ...] | list[str] = ()):
        self.stops = tuple(s for s in stops if s)
        self.stopped = False
        self._pending = ""

    def feed(self, piece: str) -> str:
        if self.stopped:
            return ""
        if not self.stops:
            return piece
        text = self._pending + piece
        hits = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        if hits:
            self.stopped = True
            self._pending = ""
            return text[:min(hits)]
        hold = 0
        for stop in self.stops:
            for k in range(min(len(stop) - 1, len(text)), 0, -1):
                if text.endswith(stop[:k]):
                    hold = max(hold, k)
                    break
        self._pending = text[len(text) - hold:] if hold else ""
        return text[:len(text) - hold]

    def flush(self) -> str:
        """What is still held back, at the end of generation (it was not a stop sequence)."""
        rest, self._pending = ("" if self.stopped else self._pending), ""
        return rest
