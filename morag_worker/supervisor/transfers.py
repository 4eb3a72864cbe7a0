"""Transfer threads: download inputs and upload results while children compute.

Downloads run on a small thread pool. Uploads go through one uploader thread that sends
every result waiting at that moment in a single batched call, so a busy host makes one
round trip for many results while a quiet one still uploads each result at once.
Outcomes come back to the main loop through the inbox as :class:`Downloaded` and
:class:`Uploaded`. A download that fails on this worker's own disk (full, read-only,
out of file handles) says so (``infra``): the task is not at fault.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from loguru import logger

from morag_worker.client import ServerError, Unreachable, WorkerClient, batch_body
from morag_worker.protocol import ResultRequest
from morag_worker.supervisor.book import Held
from morag_worker.supervisor.disk import describe_infra, is_infra_error
from morag_worker.supervisor.inbox import Inbox
from morag_worker.supervisor.messages import Downloaded, Uploaded

#: Parallel downloads: enough to overlap inputs of the next tasks with running ones on a
#: small host without flooding the server.
DOWNLOAD_THREADS = 4
#: How long the uploader waits for more results before sending a lone one.
UPLOAD_LINGER_S = 0.003
#: Results per upload call; a batch stays well under the server's request limits.
MAX_BATCH = 32


class Transfers:
    def __init__(self, client: WorkerClient, inbox: Inbox, lease_ttl_s: float) -> None:
        self.client = client
        self.inbox = inbox
        self.lease_ttl_s = lease_ttl_s
        self.pool = ThreadPoolExecutor(DOWNLOAD_THREADS, thread_name_prefix="download")
        self.pending: queue.Queue[tuple[str, ResultRequest] | None] = queue.Queue()
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
            self.inbox.put(Downloaded(held.task_id))
        except (ServerError, Unreachable) as exc:
            self.inbox.put(Downloaded(held.task_id, str(exc)[:2000]))
        except OSError as exc:
            infra = is_infra_error(exc)
            self.inbox.put(Downloaded(held.task_id, describe_infra(exc), infra=infra))
        except Exception as exc:  # never lose the task: the loop fails it and goes on
            self.inbox.put(Downloaded(held.task_id, f"{type(exc).__name__}: {exc}"[:2000]))

    def upload(self, task_id: str, body: ResultRequest) -> None:
        self.pending.put((task_id, body))

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
            try:
                self._send(batch)
            except Exception:  # the thread must outlive any one batch
                logger.exception("result upload raised; the tasks are reported as not uploaded")
                for task_id, _ in batch:
                    self.inbox.put(Uploaded(task_id, "upload_failed"))

    def _send(self, batch: list[tuple[str, ResultRequest]]) -> None:
        """Upload until accepted or refused, retrying while a lease could still be valid."""
        body = batch_body(batch)
        try:
            reply = self.client.results(body, retry_for_s=self.lease_ttl_s * 2)
        except ServerError as exc:
            if exc.status in (413, 422) and len(batch) > 1:
                for item in batch:  # one result spoils the batch: send each on its own
                    self._send([item])
                return
            refused = exc.status in (413, 422)
            logger.error("result upload failed: {}", exc)
            for task_id, _ in batch:
                outcome = "refused" if refused else "upload_failed"
                self.inbox.put(Uploaded(task_id, outcome, exc.message if refused else ""))
            return
        except Unreachable as exc:
            logger.error("result upload failed: {}", exc)
            for task_id, _ in batch:
                self.inbox.put(Uploaded(task_id, "upload_failed"))
            return
        for answer in reply.results:
            message = ""
            if answer.error is not None:
                message = answer.error.message
                logger.warning("result refused: {}", message, task_id=answer.task_id)
                state = "lease_lost" if answer.error.code == "lease_lost" else "refused"
            else:
                state = answer.state or "unknown"
            self.inbox.put(Uploaded(answer.task_id, state, message))

    def shutdown(self, timeout_s: float) -> None:
        """Send what is queued, then stop the uploader and the download threads."""
        self.pending.put(None)
        self.uploader.join(timeout=timeout_s)
        self.pool.shutdown(wait=False, cancel_futures=True)


def _safe(name: str) -> str:
    keep = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
    return keep[:100] or "input"
