"""The heartbeat thread: one batched call per interval renews every held lease.

Leases the server reports lost or cancelled are handed to the main loop through the
inbox, which stops the task in its child. The call itself is the link's: a server
without leases is only asked whether it is up.

When the server keeps worker status reports (its registration reply says so), each
beat also carries the supervisor's report (``StatusViews.report``); a worker that holds
no lease still sends one every :data:`IDLE_REPORT_S`, or at its next beat when something
an operator looks for changed (a child's state, a quarantine, draining), so the
dashboard shows its children while it waits for work.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from loguru import logger

from morag_worker.client import ServerError, Unreachable
from morag_worker.links.base import ServerLink
from morag_worker.protocol import HeartbeatRequest, LeaseRenewal, WorkerStatusReport
from morag_worker.supervisor.book import LeaseBook
from morag_worker.supervisor.inbox import Inbox
from morag_worker.supervisor.messages import LeaseCancelled, LeaseLost

#: How often an idle worker (no lease held) reports its status: its Workers page stays
#: within half a minute of the truth for one small call per half minute.
IDLE_REPORT_S = 30.0


class Heartbeater(threading.Thread):
    """Renews leases every ``interval_s``. ``report`` builds the status report to send
    along (None: the server keeps none, send nothing extra)."""

    def __init__(
        self,
        link: ServerLink,
        book: LeaseBook,
        inbox: Inbox,
        interval_s: float,
        report: Callable[[], WorkerStatusReport] | None = None,
    ) -> None:
        super().__init__(name="heartbeat", daemon=True)
        self.link = link
        self.book = book
        self.inbox = inbox
        self.interval_s = interval_s
        self.report = report
        self.stop_event = threading.Event()
        #: When the server last answered a heartbeat (or there was nothing to renew).
        self.last_ok = time.monotonic()
        #: Heartbeats that failed in a row.
        self.failures = 0
        #: When the last status report was sent (time.monotonic()), and what it said.
        self.reported_at = float("-inf")
        self.reported_shape: tuple[object, ...] = ()

    def run(self) -> None:
        while not self.stop_event.wait(self.interval_s):
            self.beat()

    def beat(self) -> None:
        held = [h for h in self.book.all() if h.stage != "dropped"]
        status = self._status(holding=bool(held))
        if not held and status is None:
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
            reply = self.link.heartbeat(
                HeartbeatRequest(leases=renewals, status=status), retry_for_s=self.interval_s
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

    def _status(self, holding: bool) -> WorkerStatusReport | None:
        """The report to send with this beat: with every beat that renews leases; while
        idle, when its shape changed or every :data:`IDLE_REPORT_S`; None when there is
        none to send. A report that cannot be built is logged and left out: it must never
        cost the leases a beat."""
        if self.report is None:
            return None
        now = time.monotonic()
        try:
            status = self.report()
        except Exception:
            logger.exception("building the status report failed; heartbeat sent without it")
            return None
        shape = _shape(status)
        if not holding and shape == self.reported_shape and now - self.reported_at < IDLE_REPORT_S:
            return None
        self.reported_at, self.reported_shape = now, shape
        return status


def _shape(report: WorkerStatusReport) -> tuple[object, ...]:
    """What an operator looks for in a report, without the readings that change on
    every sample (memory, uptime, progress)."""
    children = tuple(
        (c.name, c.state, c.task_id, c.quarantine, tuple(c.models), c.restarts, c.crashes)
        for c in report.children
    )
    return (
        children,
        report.draining,
        report.leasing_paused,
        tuple(sorted(report.quarantined_gpus.items())),
        report.tasks_done,
    )
