"""The upload pump: every piece reaches the consumer once, in order, from one thread at a
time; a consumer's error reaches the caller; memory is bounded by what may queue."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator

import pytest

from morag_worker.server import pump as pump_module
from morag_worker.server.pump import pump


async def _stream(pieces: list[bytes], pause_s: float = 0.0) -> AsyncIterator[bytes]:
    for piece in pieces:
        if pause_s:
            await asyncio.sleep(pause_s)
        yield piece


def test_pieces_arrive_in_order_once_and_never_concurrently() -> None:
    pieces = [bytes([i % 256]) * (1000 + i) for i in range(300)]
    seen: list[bytes] = []
    busy = threading.Lock()

    def consume(batch: list[bytes]) -> None:
        assert busy.acquire(blocking=False), "two batches in work at once"
        try:
            time.sleep(0.001)  # slower than the stream: pieces queue up behind
            seen.extend(batch)
        finally:
            busy.release()

    asyncio.run(pump(_stream(pieces), consume))
    assert seen == pieces


def test_queued_bytes_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pump_module, "MAX_QUEUED_BYTES", 10_000)
    largest = 0

    def consume(batch: list[bytes]) -> None:
        nonlocal largest
        largest = max(largest, sum(map(len, batch)))
        time.sleep(0.01)

    asyncio.run(pump(_stream([b"x" * 1000] * 200), consume))
    assert largest <= 10_000


def test_a_consumer_error_reaches_the_caller() -> None:
    def consume(batch: list[bytes]) -> None:
        if any(b"bad" in piece for piece in batch):
            raise ValueError("bad piece")

    with pytest.raises(ValueError, match="bad piece"):
        asyncio.run(pump(_stream([b"ok"] * 5 + [b"bad"] + [b"ok"] * 50, 0.001), consume))


def test_a_broken_stream_waits_for_the_batch_in_work() -> None:
    finished: list[float] = []

    def consume(batch: list[bytes]) -> None:
        time.sleep(0.05)
        finished.append(time.monotonic())

    async def broken() -> AsyncIterator[bytes]:
        yield b"first"
        await asyncio.sleep(0.001)
        raise ConnectionError("client went away")

    with pytest.raises(ConnectionError):
        asyncio.run(pump(broken(), consume))
    raised = time.monotonic()
    assert finished and finished[0] <= raised  # nothing writes after the caller cleans up
