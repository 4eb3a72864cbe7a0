"""Transfer threads: download inputs and upload results while children compute.

Downloads run on a small thread pool. Uploads go through one uploader thread that sends
every result waiting at that moment in a single batched call, so a busy host makes one
round trip for many results while a quiet one still uploads each result at once.
Outcomes come back to the main loop through the inbox as ``("downloaded", task_id,
error)`` and ``("uploaded", task_id, outcome)``.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from loguru import logger

from morag_worker.client import ServerError, Unreachable, WorkerClient, batch_body
from morag_worker.protocol import ResultRequest
from morag_worker.supervisor.leases import Held

#: Parallel downloads: enough to overlap inputs of the next tasks with running ones on a
#: small host without flooding the server.
DOWNLOAD_THREADS = 4
#: How long the uploader waits for more results before sending a lone one.
UPLOAD_LINGER_S = 0.003
#: Results per upload call; a batch stays well under the server's request limits.
MAX_BATCH = 32


class Transfers:
    def __init__(self, client: WorkerClient, inbox: Any, lease_ttl_s: float) -> None:
        self.client = client
        self.inbox = inbox
        self.lease_ttl_s = lease_ttl_s
        self.pool = ThreadPoolExecutor(DOWNLOAD_THREADS, thread_name_prefix="download")
        self.pending: queue.Queue[tuple[Held, ResultRequest] | None] = queue.Queue()
        self.uploader = threading.Thread(target=self._upload_loop, name="upload", daemon=True)
        self.uploader.start()

    def download(self, held: Held) -> None:
        self.pool.submit(self._download, held)

    def _download(self, held: Held) -> None:
        try:
            for index, file in enumerate(held.spec.input_files):
                dest = held.work_dir / "inputs" / f"{index}-{_safe(file.name)}"
                self.client.download(file, dest, retry_for_s=self.lease_ttl_s)
                held.inputs.append(dest)
            self.inbox.put(("downloaded", held.task_id, None))
        except (ServerError, Unreachable, OSError) as exc:
            self.inbox.put(("downloaded", held.task_id, str(exc)))

    def upload(self, held: Held, body: ResultRequest) -> None:
        self.pending.put((held, body))

    def _upload_loop(self) -> None:
        while True:
            item = self.pending.get()
            if item is None:
                return
            batch = [item]
            if self.pending.empty():
                # Let results finishing right now join this call (a busy host sends a
                # few per round trip instead of one); a quiet one waits a millisecond.
                time.sleep(UPLOAD_LINGER_S)
            while len(batch) < MAX_BATCH:
                try:
                    more = self.pending.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self.pending.put(None)  # finish this batch, then stop
                    break
                batch.append(more)
            self._send(batch)

    def _send(self, batch: list[tuple[Held, ResultRequest]]) -> None:
        """Upload until accepted or refused, retrying while a lease could still be valid."""
        body = batch_body([(held.task_id, req) for held, req in batch])
        try:
            reply = self.client.results(body, retry_for_s=self.lease_ttl_s * 2)
        except (ServerError, Unreachable) as exc:
            logger.error("result upload failed: {}", exc)
            for held, _ in batch:
                self.inbox.put(("uploaded", held.task_id, "upload_failed"))
            return
        for outcome in reply.results:
            if outcome.error is not None:
                logger.warning("result refused: {}", outcome.error.message, task_id=outcome.task_id)
                state = "lease_lost" if outcome.error.code == "lease_lost" else "refused"
            else:
                state = outcome.state or "unknown"
            self.inbox.put(("uploaded", outcome.task_id, state))

    def shutdown(self) -> None:
        self.pending.put(None)
        self.uploader.join(timeout=self.lease_ttl_s * 2)
        self.pool.shutdown(wait=True, cancel_futures=False)


def _safe(name: str) -> str:
    keep = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
    return keep[:100] or "input"
