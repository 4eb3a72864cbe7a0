"""The lease thread: keeps as many tasks leased as there are free children (+ prefetch).

It long-polls the server, so a task is picked up the moment it is submitted. Each leased
task enters the :class:`LeaseBook` before the main loop hears of it, so the count of
held tasks that bounds the next request is never behind.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from loguru import logger

from morag_worker.client import ServerError, Unreachable, WorkerClient, backoff_s
from morag_worker.protocol import LeaseRequest
from morag_worker.supervisor.leases import Held, LeaseBook


class Leaser(threading.Thread):
    def __init__(
        self,
        client: WorkerClient,
        book: LeaseBook,
        inbox: Any,
        wanted: Callable[[], int],
        task_types: Callable[[], list[str]],
        make_held: Callable[[Any], Held],
        wait_s: float,
        on_success: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__(name="leaser", daemon=True)
        self.client = client
        self.book = book
        self.inbox = inbox
        self.wanted = wanted
        self.task_types = task_types
        self.make_held = make_held
        self.wait_s = wait_s
        #: Called after every lease call the server answered (tasks or not).
        self.on_success = on_success
        self.stop_event = threading.Event()
        #: Set by the main loop whenever capacity may have grown.
        self.wake = threading.Event()
        self.last_success = 0.0
        self.last_error = ""
        self.auth_failed = False

    def run(self) -> None:
        failures = 0
        while not self.stop_event.is_set():
            want = self.wanted()
            types = self.task_types()
            if want <= 0 or not types:
                self.wake.wait(0.5)
                self.wake.clear()
                continue
            try:
                self._lease(want, types)
                failures = 0
            except (Unreachable, ServerError) as exc:
                self._failed(exc)
                self.stop_event.wait(backoff_s(failures, base_s=0.5, cap_s=30.0))
                failures += 1

    def _lease(self, want: int, types: list[str]) -> None:
        reply = self.client.lease(
            LeaseRequest(max_tasks=want, wait_seconds=self.wait_s, task_types=types),
            retry_for_s=0,
        )
        self.last_success = time.time()
        self.on_success()
        self.auth_failed = False
        for spec in reply.tasks:
            held = self.make_held(spec)
            self.book.add(held)
            self.inbox.put(("leased", spec.task_id))
        if reply.tasks:
            time.sleep(0)  # hand the GIL to the main loop, which dispatches them now

    def _failed(self, exc: Exception) -> None:
        self.last_error = str(exc)
        if isinstance(exc, ServerError) and exc.status in (401, 403):
            self.auth_failed = True
            logger.error(
                "the server refused this worker's API key ({}); check MORAG_API_KEY "
                "or --api-key-file, and that the key has role worker",
                exc.message,
            )
        else:
            logger.warning("lease call failed, backing off: {}", exc)
