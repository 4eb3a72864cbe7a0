"""Hashing and writing a stream on a thread of its own, so that reading the next piece
overlaps with both (hashlib and file writes release the GIL).

Used where a transfer is bounded by CPU rather than the network: the supervisor's
downloads (:meth:`morag_worker.client.WorkerClient.download`) hash every byte while it
is written, in one pass, instead of reading the file back to verify it.
"""

from __future__ import annotations

import queue
import threading
from typing import IO, Any

#: Pieces that may wait for the writer: memory stays at this many pieces whatever the size.
MAX_PENDING = 4


class HashingWriter:
    """Writes pieces to ``handle`` and feeds them to ``digest`` on a thread of its own.

    :meth:`write` queues a piece (waiting while ``MAX_PENDING`` are queued) and raises
    the writer's first error, if any; :meth:`close` waits until every piece is written
    and raises that error. The handle stays open (the caller owns it).
    """

    def __init__(self, handle: IO[bytes], digest: Any) -> None:
        self.handle = handle
        self.digest = digest
        self.written = 0
        self._queue: queue.Queue[bytes | None] = queue.Queue(MAX_PENDING)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="hash-write", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (piece := self._queue.get()) is not None:
            if self._error is not None:
                continue  # drain, so that a waiting write() never blocks for ever
            try:
                self.handle.write(piece)
                self.digest.update(piece)
                self.written += len(piece)
            except BaseException as exc:  # handed to the caller by write() or close()
                self._error = exc

    def write(self, piece: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(piece)

    def close(self) -> None:
        """Wait for every queued piece; raises the first error the writer met."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if self._error is not None:
            raise self._error
