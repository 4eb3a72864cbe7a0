"""Transfer threads: download inputs and upload results while children compute.

Downloads run on a small thread pool. Uploads go through one uploader thread that hands
every result waiting at that moment to the link in one batch, so a busy host makes one
round trip for many results while a quiet one still uploads each result at once (a link
whose server takes one result per call sends them one by one). Before a result is
queued the link may keep it (:meth:`ServerLink.keep_result`). Outcomes come back to the
main loop through the inbox as :class:`Downloaded` and :class:`Uploaded`. A download
that fails on this worker's own disk (full, read-only, out of file handles) says so
(``infra``): the task is not at fault. A task the server no longer has for this worker
comes back as :class:`LeaseLost`.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from loguru import logger

from morag_worker.client import ServerError, Unreachable
from morag_worker.links.base import ServerLink, TaskGone
from morag_worker.protocol import ResultRequest
from morag_worker.supervisor.book import Held
from morag_worker.supervisor.disk import describe_infra, is_infra_error
from morag_worker.supervisor.inbox import Inbox
from morag_worker.supervisor.messages import Downloaded, LeaseLost, Uploaded

#: Parallel downloads: enough to overlap inputs of the next tasks with running ones on a
#: small host without flooding the server.
DOWNLOAD_THREADS = 4
#: How long the uploader waits for more results before sending a lone one.
UPLOAD_LINGER_S = 0.003
#: Results per upload call; a batch stays well under the server's request limits.
MAX_BATCH = 32


class Transfers:
    """``cpus``: where the transfer threads run (the cores no CPU child is pinned to):
    a download hashes every byte, and on a child's core it would slow that child's task
    (bench/pipeline.py). The threads a download starts inherit it. None: anywhere."""

    def __init__(self, link: ServerLink, inbox: Inbox, cpus: set[int] | None = None) -> None:
        self.link = link
        self.inbox = inbox
        self.cpus = cpus
        self.pool = ThreadPoolExecutor(
            DOWNLOAD_THREADS, thread_name_prefix="download", initializer=self._pin
        )
        self.pending: queue.Queue[tuple[str, ResultRequest] | None] = queue.Queue()
        self.uploader = threading.Thread(target=self._upload_loop, name="upload", daemon=True)
        self.uploader.start()

    def _pin(self) -> None:
        """Keep the calling thread (and the threads it starts) on ``cpus``."""
        if self.cpus and hasattr(os, "sched_setaffinity"):
            with contextlib.suppress(OSError):  # a container that forbids it: run anywhere
                os.sched_setaffinity(0, self.cpus)  # 0: this thread (Linux)

    def download(self, held: Held) -> None:
        self.pool.submit(self._download, held)

    def _download(self, held: Held) -> None:
        try:
            fetched = self.link.download(held.spec, held.work_dir / "inputs")
            held.inputs.extend(fetched.paths)
            spec = fetched.spec if fetched.spec is not held.spec else None
            self.inbox.put(Downloaded(held.task_id, spec=spec))
        except TaskGone as exc:
            logger.warning("dropped: {}", exc, task_id=held.task_id)
            self.inbox.put(LeaseLost(held.task_id))
        except (ServerError, Unreachable) as exc:
            self.inbox.put(Downloaded(held.task_id, str(exc)[:2000]))
        except OSError as exc:
            infra = is_infra_error(exc)
            self.inbox.put(Downloaded(held.task_id, describe_infra(exc), infra=infra))
        except Exception as exc:  # never lose the task: the loop fails it and goes on
            self.inbox.put(Downloaded(held.task_id, f"{type(exc).__name__}: {exc}"[:2000]))

    def upload(self, task_id: str, body: ResultRequest) -> None:
        self.link.keep_result(task_id, body)
        self.pending.put((task_id, body))

    def _upload_loop(self) -> None:
        self._pin()
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
                for done in self.link.upload_results(batch):
                    self.inbox.put(Uploaded(done.task_id, done.outcome, done.message))
            except Exception:  # the thread must outlive any one batch
                logger.exception("result upload raised; the tasks are reported as not uploaded")
                for task_id, _ in batch:
                    self.inbox.put(Uploaded(task_id, "upload_failed"))

    def shutdown(self, timeout_s: float) -> None:
        """Send what is queued, then stop the uploader and the download threads."""
        self.pending.put(None)
        self.uploader.join(timeout=timeout_s)
        self.pool.shutdown(wait=False, cancel_futures=True)
