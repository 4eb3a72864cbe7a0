"""The lease thread: keeps as many tasks leased as there are free children (+ prefetch).

It long-polls the server, so a task is picked up the moment it is submitted (a server
that cannot wait answers at once, and its link says how long to pause before asking
again). Each leased
task enters the :class:`LeaseBook` before the main loop hears of it, so the count of
held tasks that bounds the next request is never behind. A task in the reply that this
worker cannot read is passed on as :class:`Unreadable` (the main loop fails it) and
never holds up the others.

When the server is unreachable the thread does not sleep out a long backoff: it probes
``/health`` every second or so and leases again as soon as the server answers.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

from loguru import logger

from morag_worker.client import ServerError, Unreachable, backoff_s
from morag_worker.links.base import ServerLink
from morag_worker.protocol import TaskSpec
from morag_worker.supervisor.book import Held, LeaseBook
from morag_worker.supervisor.inbox import Inbox
from morag_worker.supervisor.messages import Leased, Unreadable

#: Backoff after a refused (5xx, 429) lease call: short, since a long one only delays
#: work once the server recovers; jitter spreads a fleet's retries.
RETRY_CAP_S = 5.0
#: While the server is unreachable, ``/health`` is probed this often (±50 % jitter):
#: a worker is back within about a second of its server.
OUTAGE_PROBE_S = 1.0


class Leaser(threading.Thread):
    def __init__(
        self,
        link: ServerLink,
        book: LeaseBook,
        inbox: Inbox,
        wanted: Callable[[], int],
        task_types: Callable[[], list[str]],
        make_held: Callable[[TaskSpec], Held],
        wait_s: float,
        on_success: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__(name="leaser", daemon=True)
        self.link = link
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
        self._failures = 0

    def run(self) -> None:
        while not self.stop_event.is_set():
            want = self.wanted()
            types = self.task_types()
            if want <= 0 or not types:
                self.wake.wait(0.5)
                self.wake.clear()
                continue
            try:
                self._lease(want, types)
                self._failures = 0
            except Unreachable as exc:
                self._failed(exc)
                self._wait_for_server()
            except ServerError as exc:
                self._failed(exc)
                self.stop_event.wait(backoff_s(self._failures, base_s=0.5, cap_s=RETRY_CAP_S))
                self._failures += 1

    def _lease(self, want: int, types: list[str]) -> None:
        reply = self.link.lease(want, types, self.wait_s)
        self.last_success = time.time()
        self.on_success()
        if self.auth_failed or self._failures:
            logger.info("leasing again: the server answers")
        self.auth_failed = False
        for spec in reply.tasks:
            held = self.make_held(spec)
            self.book.add(held)
            self.inbox.put(Leased(spec.task_id))
        for task_id, token, why in reply.unreadable:
            self.inbox.put(Unreadable(task_id, token, why))
        if reply.tasks:
            time.sleep(0)  # hand the GIL to the main loop, which dispatches them now
        elif reply.wait_s:
            self.stop_event.wait(reply.wait_s)  # the server had nothing and did not wait

    def _wait_for_server(self) -> None:
        """Probe ``/health`` until it answers (or we are stopped)."""
        self._failures += 1
        while not self.stop_event.wait(OUTAGE_PROBE_S * random.uniform(0.5, 1.5)):
            try:
                self.link.health()
                return
            except (Unreachable, ServerError):
                continue

    def _failed(self, exc: Exception) -> None:
        message = str(exc)
        repeated = message == self.last_error
        self.last_error = message
        if isinstance(exc, ServerError) and exc.status in (401, 403):
            self.auth_failed = True
            if not repeated:
                logger.error(
                    "the server refused this worker's API key ({}); check MORAG_API_KEY "
                    "or --api-key-file, and that the key has role worker",
                    exc.message,
                )
        elif not repeated or self._failures % 60 == 0:
            # Once per kind of failure, then a reminder every minute or so: an outage
            # should not write hundreds of identical lines.
            logger.warning("lease call failed ({} in a row), retrying: {}", self._failures + 1, exc)
