"""Transfer threads: download inputs and upload results while children compute.

Results of each job come back to the main loop through the inbox as
``("downloaded", task_id, error)`` and ``("uploaded", task_id, outcome)``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from loguru import logger

from morag_worker.client import LeaseLostError, ServerError, Unreachable, WorkerClient
from morag_worker.protocol import ResultRequest
from morag_worker.supervisor.leases import Held

#: Parallel transfers: enough to overlap one download with one upload per busy child on
#: a small host without flooding the server.
TRANSFER_THREADS = 4


class Transfers:
    def __init__(self, client: WorkerClient, inbox: Any, lease_ttl_s: float) -> None:
        self.client = client
        self.inbox = inbox
        self.lease_ttl_s = lease_ttl_s
        self.pool = ThreadPoolExecutor(TRANSFER_THREADS, thread_name_prefix="transfer")

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
        self.pool.submit(self._upload, held, body)

    def _upload(self, held: Held, body: ResultRequest) -> None:
        """Upload until accepted, refused, or the lease can no longer be valid."""
        try:
            state = self.client.result(held.task_id, body, retry_for_s=self.lease_ttl_s * 2)
            self.inbox.put(("uploaded", held.task_id, state))
        except LeaseLostError as exc:
            logger.warning("result dropped, lease lost: {}", exc.message, task_id=held.task_id)
            self.inbox.put(("uploaded", held.task_id, "lease_lost"))
        except (ServerError, Unreachable) as exc:
            logger.error("result upload failed: {}", exc, task_id=held.task_id)
            self.inbox.put(("uploaded", held.task_id, "upload_failed"))

    def shutdown(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=False)


def _safe(name: str) -> str:
    keep = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
    return keep[:100] or "input"
