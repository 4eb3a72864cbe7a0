"""A minimal HTTP/1.1 keep-alive client on asyncio streams, for bench/fleet.py.

Sixty-four simulated workers share two cores with the server they load: a general
client (httpx, requests) spends several times the server's own per-call CPU, so the
fleet would measure its clients. This one writes a request and reads a
``Content-Length`` (or chunked) reply on one persistent connection, nothing more: no
redirects, no TLS, no retries; a dropped connection is reopened once.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any


class HttpError(Exception):
    """The server answered with a status the caller did not accept."""

    def __init__(self, status: int, body: bytes, what: str) -> None:
        super().__init__(f"{what}: HTTP {status}: {body[:300].decode(errors='replace')}")
        self.status = status
        self.body = body


class Conn:
    """One keep-alive connection to ``host:port``; one request at a time (a lock)."""

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.host = host
        self.port = port
        self.headers = headers
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        async with self._lock:
            for attempt in (0, 1):
                try:
                    return await self._once(method, path, body)
                except (ConnectionError, asyncio.IncompleteReadError):
                    self._drop()
                    if attempt:
                        raise
        raise AssertionError("unreachable")

    async def json(
        self, method: str, path: str, payload: Any = None, ok: tuple[int, ...] = (200,)
    ) -> Any:
        body = None if payload is None else json.dumps(payload).encode()
        status, reply = await self.request(method, path, body)
        if status not in ok:
            raise HttpError(status, reply, f"{method} {path}")
        return json.loads(reply) if reply else None

    async def _once(self, method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        head += [f"{k}: {v}" for k, v in self.headers.items()]
        if body is not None:
            head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        self._writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + (body or b""))
        raw = await self._reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        if "content-length" in fields:
            reply = await self._reader.readexactly(int(fields["content-length"]))
        elif fields.get("transfer-encoding", "").lower() == "chunked":
            reply = await self._chunked()
        else:
            reply = b""
        if fields.get("connection", "").lower() == "close":
            self._drop()
        return status, reply

    async def _chunked(self) -> bytes:
        assert self._reader is not None
        parts = []
        while True:
            size = int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self._reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await self._reader.readexactly(size))
            await self._reader.readexactly(2)

    def _drop(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    def close(self) -> None:
        self._drop()
