"""The leases this worker holds, and the thread that renews them.

Every leased task, from the moment the lease call returns until its result is accepted
(or it is released), is in the :class:`LeaseBook`. One batched heartbeat per interval
renews all of them; leases the server reports lost or cancelled are handed to the main
loop through the inbox, which stops the task in its child.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loguru import logger

from morag_worker.client import ServerError, Unreachable, WorkerClient
from morag_worker.protocol import HeartbeatRequest, LeaseRenewal, TaskSpec


@dataclass
class Held:
    spec: TaskSpec
    work_dir: Path
    #: downloading → ready → running → uploading; "dropped" once lost or cancelled.
    stage: str = "downloading"
    inputs: list[Path] = field(default_factory=list)
    slot: str | None = None
    progress: float | None = None
    child_stage: str | None = None
    leased_at: float = field(default_factory=time.monotonic)
    started_at: float | None = None
    deadline: float | None = None
    #: Why the supervisor asked the child to stop this task (timeout, cancel, lost, memory).
    stop_reason: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def task_id(self) -> str:
        return self.spec.task_id


class LeaseBook:
    """Thread-safe map of task id → :class:`Held`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, Held] = {}

    def add(self, held: Held) -> None:
        with self._lock:
            self._held[held.task_id] = held

    def get(self, task_id: str) -> Held | None:
        with self._lock:
            return self._held.get(task_id)

    def pop(self, task_id: str) -> Held | None:
        with self._lock:
            return self._held.pop(task_id, None)

    def all(self) -> list[Held]:
        with self._lock:
            return list(self._held.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._held)


class Heartbeater(threading.Thread):
    def __init__(
        self, client: WorkerClient, book: LeaseBook, inbox: Any, interval_s: float
    ) -> None:
        super().__init__(name="heartbeat", daemon=True)
        self.client = client
        self.book = book
        self.inbox = inbox
        self.interval_s = interval_s
        self.stop_event = threading.Event()
        self.last_ok = time.monotonic()

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
                stage=h.child_stage or h.stage,
            )
            for h in held
        ]
        try:
            reply = self.client.heartbeat(
                HeartbeatRequest(leases=renewals), retry_for_s=self.interval_s
            )
        except (Unreachable, ServerError) as exc:
            logger.warning("heartbeat failed: {}", exc)
            return
        self.last_ok = time.monotonic()
        for task_id in reply.lost:
            self.inbox.put(("lost", task_id))
        for task_id in reply.cancel:
            self.inbox.put(("cancel", task_id))
