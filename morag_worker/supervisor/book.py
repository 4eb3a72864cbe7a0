"""The lease book: every task this worker holds, and where each one is.

A task enters the book the moment the lease call returns and leaves it when its result
is accepted, it is released, or its lease is lost. The book is the only writer of a held
task's :data:`Stage`; everyone else reads it. It is shared with the lease and heartbeat
threads, so every access takes its lock.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from morag_worker.protocol import TaskSpec

#: Where a held task is:
#: ``downloading`` (inputs on their way) → ``ready`` (waiting for a child) →
#: ``dispatched`` (sent to a child) → ``running`` (the child started it) →
#: ``uploading`` (its result or failure on its way to the server);
#: ``dropped`` once lost, cancelled or released (leaving the book).
Stage = Literal["downloading", "ready", "dispatched", "running", "uploading", "dropped"]
#: Stages in which a child has (or is about to have) the task.
IN_CHILD: frozenset[str] = frozenset({"dispatched", "running"})


@dataclass
class Held:
    spec: TaskSpec
    work_dir: Path
    stage: Stage = "downloading"
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
    """Thread-safe map of task id → :class:`Held`, and the writer of their stages."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, Held] = {}

    def add(self, held: Held) -> None:
        with self._lock:
            self._held[held.task_id] = held

    def get(self, task_id: str | None) -> Held | None:
        if task_id is None:
            return None
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

    # ---- stages --------------------------------------------------------------------------

    def ready(self, held: Held) -> None:
        held.timings["download_s"] = time.monotonic() - held.leased_at
        held.stage = "ready"

    def dispatched(self, held: Held, slot: str, deadline: float) -> None:
        held.slot, held.deadline, held.stage = slot, deadline, "dispatched"

    def running(self, held: Held, started_at: float) -> None:
        held.started_at, held.stage = started_at, "running"

    def uploading(self, held: Held) -> None:
        held.stage = "uploading"

    def drop(self, held: Held) -> Stage:
        """Mark the task dropped and take it out of the book; returns its old stage."""
        previous, held.stage = held.stage, "dropped"
        self.pop(held.task_id)
        return previous

    def stopping(self, held: Held, reason: str) -> None:
        """Record why the supervisor asked the task's child to stop it."""
        if not held.stop_reason:
            held.stop_reason = reason

    def count(self, *stages: str) -> int:
        return sum(1 for h in self.all() if h.stage in stages)
