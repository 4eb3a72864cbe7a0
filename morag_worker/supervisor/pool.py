"""The child pool: start, dispatch to, stop and restart spawned children.

Each slot (``gpu0``, ``cpu1`` …) always has at most one live process. A slot whose
process dies is restarted after an exponential backoff; a slot that dies too often in a
window is quarantined (its GPU marked unhealthy) while the other slots keep working.
The pool never talks to the server; the supervisor turns what it reports into calls.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

from morag_worker.supervisor.child import child_main
from morag_worker.supervisor.limits import task_limit
from morag_worker.supervisor.messages import ChildSpec, TaskMessage

#: Restart backoff per slot: base * 2^(recent crashes - 1), capped. A crash-looping slot
#: costs almost nothing while a one-off crash is replaced within a second.
RESTART_BASE_S = 0.5
RESTART_CAP_S = 60.0
#: Crash budget: this many crashes within the window quarantine the slot.
CRASH_BUDGET = 5
CRASH_WINDOW_S = 300.0
#: Grace between asking a child to exit and killing it.
STOP_GRACE_S = 5.0

_CTX = multiprocessing.get_context("spawn")


@dataclass
class Slot:
    """One child position and the process currently filling it."""

    spec: ChildSpec
    pool: str  #: "gpu" or "cpu": which task types it serves
    gpu: int | None = None
    process: Any = None
    conn: Any = None  #: the supervisor's end of the child's pipe
    heartbeat: Any = None
    cancel: Any = None
    state: str = "down"  #: down, starting, idle, busy, stopping, quarantined
    task_id: str | None = None
    seq: int = 0
    started_at: float = 0.0
    restart_at: float = 0.0
    crashes: deque[float] = field(default_factory=deque)
    models: tuple[str, ...] = ()
    tasks_done: int = 0
    #: Why the slot should be replaced once its current task ends ("" = it should not).
    recycle: str = ""
    restarts: int = 0
    #: Cumulative model-cache counters last reported by this process (hits, misses, load s).
    cache_seen: tuple[int, int, float] = (0, 0, 0.0)
    #: Bytes of models the child's cache holds, as it last reported.
    cache_bytes: int = 0
    #: Latest watchdog readings: RSS of the child and its subprocesses, its GPU memory.
    rss_bytes: int = 0
    gpu_bytes: int = 0
    #: Tasks this process may run before it is replaced (0 = no limit); jittered per start.
    task_limit: int = 0
    #: When the supervisor last saw the child become idle (its heartbeat may predate it).
    idle_since: float = 0.0
    #: Why the supervisor stopped or killed the process itself ("" = it did not).
    down_reason: str = ""
    #: The process was over its soft memory limit before its first task (not recycled).
    above_soft_at_start: bool = False
    #: When to kill the process if it is still on the task it was asked to stop, and why.
    kill_at: float | None = None
    kill_reason: str = ""

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()


class ChildPool:
    def __init__(
        self, specs: list[tuple[ChildSpec, str, int | None]], max_tasks_per_child: int = 0
    ) -> None:
        self.slots = {spec.name: Slot(spec=spec, pool=pool, gpu=gpu) for spec, pool, gpu in specs}
        self.max_tasks_per_child = max_tasks_per_child
        #: Quarantined GPUs and why; no slot on them is started again.
        self.bad_gpus: dict[int, str] = {}

    # ---- lifecycle -----------------------------------------------------------------------------

    def start(self, slot: Slot) -> None:
        slot.spec = replace(slot.spec, generation=slot.spec.generation + 1)
        # One duplex pipe per child: tasks go down, events come up. Sends are synchronous
        # (no feeder thread), and the main loop waits on every pipe directly.
        slot.conn, child_end = _CTX.Pipe(duplex=True)
        slot.heartbeat = _CTX.Value("d", time.monotonic(), lock=False)
        slot.cancel = _CTX.Value("q", 0, lock=False)
        slot.process = _CTX.Process(
            target=child_main,
            name=f"morag-{slot.name}",
            args=(slot.spec, child_end, slot.heartbeat, slot.cancel),
            daemon=True,
        )
        slot.process.start()
        child_end.close()  # only the child holds its end: EOF here means it is gone
        slot.state, slot.task_id, slot.recycle = "starting", None, ""
        slot.started_at, slot.tasks_done, slot.models = time.monotonic(), 0, ()
        slot.cache_seen, slot.cache_bytes, slot.down_reason = (0, 0, 0.0), 0, ""
        slot.rss_bytes = slot.gpu_bytes = 0
        slot.above_soft_at_start, slot.kill_at = False, None
        slot.task_limit = task_limit(self.max_tasks_per_child)

    def due_to_start(self, now: float) -> list[Slot]:
        return [s for s in self.slots.values() if s.state == "down" and s.restart_at <= now]

    def exited(self) -> list[tuple[Slot, int | None]]:
        """Slots whose process has exited since the last look, with the exit codes."""
        gone = []
        for slot in self.slots.values():
            if slot.process is not None and not slot.process.is_alive():
                slot.process.join(timeout=0)
                gone.append((slot, slot.process.exitcode))
                slot.process.close()
                slot.process = None
                self.close_conn(slot)
        return gone

    def close_conn(self, slot: Slot) -> None:
        if slot.conn is not None:
            slot.conn.close()
            slot.conn = None

    def connections(self) -> dict[Any, Slot]:
        """Each live child's pipe, for the main loop to wait on."""
        return {slot.conn: slot for slot in self.slots.values() if slot.conn is not None}

    def mark_down(self, slot: Slot, now: float, crashed: bool) -> bool:
        """Schedule the slot's restart; returns True if it was quarantined instead."""
        slot.task_id = None
        if slot.gpu is not None and slot.gpu in self.bad_gpus:
            slot.state = "quarantined"
            return True
        if not crashed:
            slot.state, slot.restart_at = "down", now
            return False
        slot.crashes.append(now)
        while slot.crashes and now - slot.crashes[0] > CRASH_WINDOW_S:
            slot.crashes.popleft()
        if len(slot.crashes) >= CRASH_BUDGET:
            slot.state = "quarantined"
            return True
        delay = min(RESTART_CAP_S, RESTART_BASE_S * 2 ** (len(slot.crashes) - 1))
        slot.state, slot.restart_at = "down", now + delay
        return False

    def quarantine_gpu(self, gpu: int, reason: str) -> list[Slot]:
        """Stop using ``gpu``: idle children on it are asked to exit and busy ones finish
        their task first; none is started again. Returns the slots on the GPU."""
        self.bad_gpus.setdefault(gpu, reason)
        on_gpu = [s for s in self.slots.values() if s.gpu == gpu]
        for slot in on_gpu:
            if slot.state == "down":
                slot.state = "quarantined"
            elif slot.state == "idle":
                self.ask_to_exit(slot)
            elif slot.state in ("busy", "starting"):
                slot.recycle = slot.recycle or "quarantine"
        return on_gpu

    # ---- work ----------------------------------------------------------------------------------

    def dispatch(self, slot: Slot, message: TaskMessage) -> None:
        slot.state, slot.task_id = "busy", message.task_id
        self._send(slot, message)

    def _send(self, slot: Slot, message: TaskMessage | None) -> None:
        # A child that is gone (or going) cannot take it: the reaper reports its task.
        with contextlib.suppress(OSError, AttributeError):
            slot.conn.send(message)

    def next_seq(self, slot: Slot) -> int:
        slot.seq += 1
        return slot.seq

    def cancel_current(self, slot: Slot) -> None:
        """Ask the child to abandon its current task (it checks between stages)."""
        if slot.cancel is not None:
            slot.cancel.value = slot.seq

    def kill(self, slot: Slot) -> None:
        if slot.process is not None and slot.process.is_alive():
            slot.process.kill()

    def ask_to_exit(self, slot: Slot) -> None:
        if slot.conn is not None and slot.process is not None:
            self._send(slot, None)
            slot.state = "stopping"

    def stop_all(self, grace_s: float = STOP_GRACE_S) -> None:
        """Ask every child to exit, then TERM, then KILL; reap them all."""
        for slot in self.slots.values():
            if slot.alive:
                self.ask_to_exit(slot)
        deadline = time.monotonic() + grace_s
        for sig in ("terminate", "kill"):
            for slot in self.slots.values():
                if slot.process is not None:
                    slot.process.join(timeout=max(0.0, deadline - time.monotonic()))
                    if slot.process.is_alive():
                        getattr(slot.process, sig)()
            deadline = time.monotonic() + 2.0
        for slot in self.slots.values():
            if slot.process is not None:
                slot.process.join(timeout=2.0)

    def capacity(self) -> int:
        return sum(1 for s in self.slots.values() if s.state != "quarantined")

    def healthy(self) -> list[Slot]:
        return [s for s in self.slots.values() if s.state in ("idle", "busy")]

    def idle(self) -> list[Slot]:
        return [s for s in self.slots.values() if s.state == "idle"]
