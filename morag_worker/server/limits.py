"""Request limits: body size per endpoint, body read timeouts, long-polls per key, and how
deep task parameters may nest. docs/protocol.md lists each with its default and flag.

Body size and read timeouts are enforced by :class:`BodyGuard`, an ASGI middleware that
wraps ``receive``: it acts only while the application reads a body, by then the route is
known, so each route gets its own limit. A refusal is raised from ``receive`` as
:class:`BodyRefused` and becomes the usual JSON error; a multipart upload that is cut off
removes its temporary files on the way out (see :mod:`.files`).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: How deep task parameters may nest, on every path (JSON and multipart). The supervisor's
#: parser refuses 200 levels for a whole lease reply; 32 leaves ample room for real options.
MAX_PARAMETERS_DEPTH = 32
#: Routes whose bodies are results: they get ``max_result_bytes`` instead of the small limit.
RESULT_ROUTES = frozenset(
    {
        "/api/v1/workers/{worker_id}/results",
        "/api/v1/workers/{worker_id}/tasks/{task_id}/result",
    }
)
#: Multipart task submissions stream files to disk under their own limits (files.py).
UPLOAD_ROUTE = ("POST", "/api/v1/tasks")
#: Pieces of resumable uploads: limited by the size the upload declared (uploads.py).
UPLOAD_PIECE_ROUTE = ("PATCH", "/api/v1/uploads/{upload_id}")
#: An oversize body of up to this many bytes is read to its end (and dropped) before the
#: 413, so that the client, still sending, can read the answer instead of a reset; a
#: larger one is cut off.
LINGER_MAX_BYTES = 256 << 20


@dataclass(frozen=True)
class RequestLimits:
    #: Every JSON body but results, and each multipart text field: task parameters are
    #: options and a URL, and a heartbeat for 1,000 leases is about 150 KB.
    max_body_bytes: int = 1 << 20
    #: One result call (single or batched): a four-hour transcript with word timings and
    #: chunks is about 10 MB; 64 MiB leaves room without letting one call exhaust memory.
    max_result_bytes: int = 64 << 20
    #: A body that sends nothing for this long is refused (408); also the grace before
    #: ``min_body_rate`` applies. A real client pauses for milliseconds, not seconds.
    body_timeout_s: float = 15.0
    #: After the grace, a body must average at least this many bytes/s: a 1-byte/s trickle
    #: is refused after ``body_timeout_s`` while the slowest real uplink is far above it.
    min_body_rate: float = 1024.0
    #: Concurrent long-polls per key: a supervisor holds one at a time, so 32 allows a pool
    #: key shared by 32 hosts; more waiters would only wake together for the same tasks.
    max_long_polls_per_key: int = 32


class BodyRefused(HTTPException):
    """A request body over its limit (413) or too slow (408); answered as JSON."""

    def __init__(self, status: int, code: str, message: str, close: bool) -> None:
        super().__init__(status, message, {"Connection": "close"} if close else None)
        self.code = code


def _human(n: float) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{int(n // size)} {unit}"
    return f"{int(n)} bytes"


class _Body:
    """Reads one request's body through ``receive`` under its size and time limits.

    Time counts only while the application waits for the client: a pause of the server's
    own (a slow disk under an upload) never makes a client look slow.
    """

    def __init__(self, scope: Scope, receive: Receive, limits: RequestLimits) -> None:
        self.scope = scope
        self._receive = receive
        self.limits = limits
        self.limit: int | None = None
        self.flag = ""
        self.started = False
        self.waited_s = 0.0
        self.received = 0
        self.done = False

    def _choose_limit(self) -> None:
        route = self.scope.get("route")
        path = getattr(route, "path", "")
        ctype = _header(self.scope, b"content-type")
        if path in RESULT_ROUTES:
            self.limit, self.flag = self.limits.max_result_bytes, "--max-result-bytes"
        elif (self.scope["method"], path) == UPLOAD_ROUTE and ctype.startswith("multipart/"):
            self.limit = None  # files and fields are limited one by one while streaming
        elif (self.scope["method"], path) == UPLOAD_PIECE_ROUTE:
            self.limit = None  # the upload's declared size limits it
        else:
            self.limit, self.flag = self.limits.max_body_bytes, "--max-body-bytes"
        declared = _content_length(self.scope)
        if self.limit is not None and declared is not None and declared > self.limit:
            # Answered before reading: the server drops the rest of a declared body itself
            # once the answer is out, on a connection kept open (unless it is huge).
            raise self._too_large(close=declared > LINGER_MAX_BYTES)

    def _too_large(self, close: bool) -> BodyRefused:
        assert self.limit is not None
        return BodyRefused(
            413,
            "body_too_large",
            f"the request body exceeds the limit of {self.limit} bytes ({_human(self.limit)}) "
            f"for this call; send less, or raise the server's {self.flag}",
            close,
        )

    async def receive(self) -> Message:
        if self.done:
            return await self._receive()
        if not self.started:
            self.started = True
            self._choose_limit()
        message = await self._next()
        if self.limit is not None and self.received > self.limit:
            while not self.done and self.received <= LINGER_MAX_BYTES:
                await self._next()  # read and drop the rest: see LINGER_MAX_BYTES
            raise self._too_large(close=not self.done)
        return message

    def _budget_s(self) -> float:
        """How long this read may wait: the idle limit, or less when the body's average
        rate (over the time spent waiting for it) would fall under the floor first."""
        rate_budget = (
            self.limits.body_timeout_s + self.received / self.limits.min_body_rate - self.waited_s
        )
        return min(self.limits.body_timeout_s, rate_budget)

    async def _next(self) -> Message:
        budget = self._budget_s()
        began = time.monotonic()
        try:
            if budget <= 0:
                raise TimeoutError
            message = await asyncio.wait_for(self._receive(), budget)
        except TimeoutError:
            self.waited_s += time.monotonic() - began
            raise self._too_slow(idle=budget >= self.limits.body_timeout_s) from None
        self.waited_s += time.monotonic() - began
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            self.done = not message.get("more_body", False)
        else:
            self.done = True
        return message

    def _too_slow(self, idle: bool) -> BodyRefused:
        limit_s = self.limits.body_timeout_s
        if idle:
            message = (
                f"the request body sent nothing for {limit_s:g} s; send it without pauses, "
                "or raise the server's --body-timeout"
            )
        else:
            rate = self.received / max(self.waited_s, 1e-9)
            message = (
                f"the request body arrived at {rate:.0f} bytes/s, under the minimum of "
                f"{self.limits.min_body_rate:g} bytes/s; send it faster, or lower the server's "
                "--min-body-rate"
            )
        return BodyRefused(408, "body_timeout", message, close=True)


class BodyGuard:
    """ASGI middleware: every request body is read under :class:`RequestLimits`."""

    def __init__(self, app: ASGIApp, limits: RequestLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.app(scope, _Body(scope, receive, self.limits).receive, send)


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1").lower()
    return ""


def _content_length(scope: Scope) -> int | None:
    raw = _header(scope, b"content-length")
    return int(raw) if raw.isdigit() else None


class LongPollGate:
    """Counts the long-polls each key has waiting, and refuses one over the limit (429)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._waiting: dict[str, int] = {}

    def total(self) -> int:
        """Long-polls waiting now, all keys together (a gauge at scrape time)."""
        return sum(self._waiting.values())

    @contextmanager
    def hold(self, key_id: str, wait_s: float) -> Iterator[None]:
        """Hold a slot for ``key_id`` while it waits; raises :class:`LongPollRefused`."""
        if self._waiting.get(key_id, 0) >= self.limit:
            raise LongPollRefused(self.limit, wait_s)
        self._waiting[key_id] = self._waiting.get(key_id, 0) + 1
        try:
            yield
        finally:
            self._waiting[key_id] -= 1
            if not self._waiting[key_id]:
                del self._waiting[key_id]


class LongPollRefused(Exception):
    def __init__(self, limit: int, wait_s: float) -> None:
        #: Come back after the wait that was asked for: the key's other long-polls are
        #: taking the tasks meanwhile.
        self.retry_after_s = max(1, min(30, math.ceil(wait_s)))
        super().__init__(
            f"this key already has {limit} long-polls waiting (the server's "
            f"--max-long-polls-per-key); retry after {self.retry_after_s} s, poll without "
            "waiting, or raise the limit"
        )


_ERRORS = {
    400: "malformed request (a broken multipart body)",
    401: "missing, unknown, revoked or expired API key",
    403: "this key's role may not make this call",
    408: "the request body stalled (--body-timeout) or trickled (--min-body-rate)",
    413: "the request body is over its limit (--max-body-bytes, --max-result-bytes, "
    "--max-upload-bytes)",
    415: "unsupported content type (send multipart/form-data or application/json)",
    429: "too many long-polls waiting for this key (--max-long-polls-per-key); see Retry-After",
    431: "a multipart part's headers are too large (a very long file name)",
    507: "the server is out of disk space; nothing of the request was kept",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the refusals a route may answer, with the JSON error body."""
    from morag_worker.protocol import ErrorBody

    return {code: {"model": ErrorBody, "description": _ERRORS[code]} for code in codes}


def json_depth(value: Any) -> int:
    """How deep objects and arrays nest in ``value`` (a scalar is 0, ``{}`` is 1)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            items: Any = item.values()
        elif isinstance(item, list):
            items = item
        else:
            continue
        deepest = max(deepest, depth + 1)
        stack.extend((child, depth + 1) for child in items)
    return deepest
