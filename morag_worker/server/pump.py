"""Feeding a request body to a consumer that runs on a thread while the next pieces arrive.

The consumers parse, hash and write: hashlib and file writes release the GIL, so with
two cores the event loop receives while a thread hashes. One batch is in work at a time
(the consumer sees the pieces in order, from one thread at a time) and at most
``MAX_QUEUED_BYTES`` wait behind it, so memory stays flat whatever the size.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import AsyncIterator, Callable

#: Received bytes that may wait while the previous batch is consumed.
MAX_QUEUED_BYTES = 4 << 20
#: Threads that consume uploads (each upload uses one at a time).
_WORKERS = concurrent.futures.ThreadPoolExecutor(8, thread_name_prefix="upload")


async def pump(stream: AsyncIterator[bytes], consume: Callable[[list[bytes]], None]) -> None:
    """Hand every piece of ``stream`` to ``consume`` (on a worker thread), in order.

    Returns once all are consumed; raises the first error of either side. On any error,
    a batch still in work is waited for before this returns, so that the caller may
    then remove the files the consumer writes to.
    """
    loop = asyncio.get_running_loop()
    inflight: concurrent.futures.Future[None] | None = None
    queued: list[bytes] = []
    size = 0
    try:
        async for chunk in stream:
            if not chunk:
                continue
            queued.append(chunk)
            size += len(chunk)
            if inflight is not None and (size >= MAX_QUEUED_BYTES or inflight.done()):
                await asyncio.wrap_future(inflight, loop=loop)
                inflight = None
            if inflight is None:
                inflight = _WORKERS.submit(consume, queued)
                queued, size = [], 0
        for last in (None, queued):  # the batch in work, then the pieces after it
            if last:
                inflight = _WORKERS.submit(consume, last)
            if inflight is not None:
                await asyncio.wrap_future(inflight, loop=loop)
                inflight = None
    except BaseException:
        if inflight is not None and not inflight.cancel():
            # The batch in work writes to files the caller may remove next: let it end
            # (at most MAX_QUEUED_BYTES of hashing and writing). One still queued behind
            # other uploads' batches was just cancelled instead.
            concurrent.futures.wait([inflight])
        raise
