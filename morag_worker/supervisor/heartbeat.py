"""The heartbeat thread: one batched call per interval renews every held lease.

Leases the server reports lost or cancelled are handed to the main loop through the
inbox, which stops the task in its child.
"""

from __future__ import annotations

import threading
import time

from loguru import logger

from morag_worker.client import ServerError, Unreachable, WorkerClient
from morag_worker.protocol import HeartbeatRequest, LeaseRenewal
from morag_worker.supervisor.book import LeaseBook
from morag_worker.supervisor.inbox import Inbox
from morag_worker.supervisor.messages import LeaseCancelled, LeaseLost


class Heartbeater(threading.Thread):
    def __init__(
        self, client: WorkerClient, book: LeaseBook, inbox: Inbox, interval_s: float
    ) -> None:
        super().__init__(name="heartbeat", daemon=True)
        self.client = client
        self.book = book
        self.inbox = inbox
        self.interval_s = interval_s
        self.stop_event = threading.Event()
        #: When the server last answered a heartbeat (or there was nothing to renew).
        self.last_ok = time.monotonic()
        #: Heartbeats that failed in a row.
        self.failures = 0

    def run(self) -> None:
        while not self.stop_event.wait(self.interval_s):
            self.beat()

    def beat(self) -> None:
        held = [h for h in self.book.all() if h.stage != "dropped"]
        if not held:
            self.last_ok = time.monotonic()
            return
        renewals = [
            LeaseRenewal(
                task_id=h.task_id,
                lease_token=h.spec.lease_token,
                progress=h.progress,
                stage=(h.child_stage or h.stage)[:64],
            )
            for h in held
        ]
        try:
            reply = self.client.heartbeat(
                HeartbeatRequest(leases=renewals), retry_for_s=self.interval_s
            )
        except (Unreachable, ServerError) as exc:
            self.failures += 1
            if self.failures == 1 or self.failures % 30 == 0:  # once, then a reminder
                logger.warning("heartbeat failed ({} in a row): {}", self.failures, exc)
            return
        if self.failures:
            logger.info("heartbeats answered again after {} failures", self.failures)
        self.failures = 0
        self.last_ok = time.monotonic()
        for task_id in reply.lost:
            self.inbox.put(LeaseLost(task_id))
        for task_id in reply.cancel:
            self.inbox.put(LeaseCancelled(task_id))
