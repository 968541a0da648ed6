"""Pure ASGI middleware (no per-request task or body copy): the request guard (size limit, NUL
characters), the last-resort error handler, and metrics."""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

from aivo.api.metrics import ApiMetrics

log = logging.getLogger(__name__)
Scope = dict[str, Any]
# A NUL character in a JSON string is written \u0000; it is one only after an even number of
# backslashes (`\\u0000` is a backslash followed by the text "u0000").
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_NUL_MESSAGE = ("invalid request: text must not contain NUL characters (\\u0000 or %00): they cannot be "
                "stored and no valid id, name or free text holds one")


def _has_nul_in_url(scope: Scope) -> bool:
    raw_path = scope.get("raw_path") or scope.get("path", "").encode()
    query = scope.get("query_string", b"")
    return any(b"\x00" in part or b"%00" in part for part in (raw_path, query, scope.get("path", "").encode()))


def _json_error(status: int, detail: str) -> tuple[dict, dict]:
    body = json.dumps({"detail": detail}).encode()
    return ({"type": "http.response.start", "status": status,
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]},
            {"type": "http.response.body", "body": body})


class RequestGuard:
    """Refuse, before the application parses anything:
    - request bodies above `max_bytes` with 413 (by Content-Length up front, or by counting a
      streamed body);
    - NUL characters anywhere in the request with 422: in the path or query string (`%00`),
      in a JSON body (`\\u0000`) or in a form body (`%00`). PostgreSQL cannot store them, so
      they are refused on every backend alike (data moved from SQLite would not load)."""

    def __init__(self, app, *, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _has_nul_in_url(scope):
            await self._answer(send, 422, _NUL_MESSAGE)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    await self._refuse(send)
                    return
        seen = 0
        started = refused = False
        tail = b""  # the end of the previous chunk: a \u0000 may straddle two chunks
        form = any(name == b"content-type" and value.lower().startswith(b"application/x-www-form-urlencoded")
                   for name, value in scope.get("headers", ()))

        async def counting_receive():
            # Over the limit or a NUL: answer now, then tell the app the client left (whatever
            # it answers to that is dropped below).
            nonlocal seen, started, refused, tail
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                seen += len(chunk)
                if seen > self.max_bytes:
                    refused = True
                    if not started:
                        started = True
                        await self._refuse(send)
                    return {"type": "http.disconnect"}
                window = tail + chunk
                if b"\x00" in window or (b"%00" in window if form else
                                          b"u0000" in window and _JSON_NUL.search(window) is not None):
                    refused = True
                    if not started:
                        started = True
                        await self._answer(send, 422, _NUL_MESSAGE)
                    return {"type": "http.disconnect"}
                tail = _tail(window)
            return message

        async def tracking_send(message):
            nonlocal started
            if refused:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except Exception:
            if not refused:
                raise

    async def _refuse(self, send) -> None:
        await self._answer(send, 413, f"request body larger than {self.max_bytes:,} bytes; split the batch")

    @staticmethod
    async def _answer(send, status: int, detail: str) -> None:
        start, body = _json_error(status, detail)
        await send(start)
        await send(body)


def _tail(window: bytes) -> bytes:
    """The bytes a NUL escape in the next chunk may start in: the last 6, extended over a run of
    backslashes (whose parity decides whether `\\u0000` is an escape)."""
    keep = 6
    while keep < len(window) and window[-keep - 1:-keep] == b"\\":
        keep += 1
    return window[-keep:]


class CatchAll:
    """The last resort for a bug (an exception no handler turned into an answer): log it once,
    with the route template and never the raw path (it may hold a learner's id), and answer 500
    with a JSON body, keeping the connection open. Starlette's own fallback re-raises after
    answering, and the server then drops the keep-alive connection."""

    def __init__(self, app, *, on_error):
        self.app = app
        self.on_error = on_error  # (scope, exception) -> (status, detail): logs and translates

    async def __call__(self, scope: Scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            status, detail = self.on_error(scope, exc)
            if started:  # part of an answer is out (a stream): the connection must close
                raise
            start, body = _json_error(status, detail)
            await send(start)
            await send(body)


class RequestMetrics:
    """Counts requests and observes their latency per (method, route template, status)."""

    def __init__(self, app, *, metrics: ApiMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def recording_send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "<unmatched>"
            self.metrics.observe_request(method=scope.get("method", ""), route=template, status=status,
                                         seconds=time.perf_counter() - start)
