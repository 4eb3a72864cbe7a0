"""The child pool: start, dispatch to, stop and restart spawned children.

Each slot (``gpu0``, ``cpu1`` …) always has at most one live process. The pool is the
only writer of a slot's state; the main loop and its helpers call its methods. A slot
whose process dies is restarted after an exponential backoff; a slot that crashes too
often in a window is quarantined (and its GPU marked unhealthy) while the other slots
keep working. Quarantine is not for ever: the slot is probed again after a backoff that
doubles with each quarantine, and returns to service when a fresh child boots; a crash
during the probation that follows sends it straight back.

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
from morag_worker.supervisor.messages import ChildReady, ChildSpec, TaskFinished, TaskMessage

#: Restart backoff per slot: base * 2^(recent crashes - 1), capped. A crash-looping slot
#: costs almost nothing while a one-off crash is replaced within a second.
RESTART_BASE_S = 0.5
RESTART_CAP_S = 60.0
#: Crash budget: this many crashes within the window quarantine the slot.
CRASH_BUDGET = 5
CRASH_WINDOW_S = 300.0
#: Quarantine probes: the first after ``--quarantine-probe`` (a minute), doubling per
#: quarantine up to half an hour, so a host with a flaky GPU retries it without
#: hammering it.
PROBE_CAP_S = 1800.0
#: After a probe passes, a crash within this window quarantines the slot again at once.
PROBATION_S = 300.0
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
    #: Quarantines so far (each doubles the wait before the next probe), and when the
    #: next probe starts; a probed slot is on probation until ``probation_until``.
    quarantines: int = 0
    probe_at: float = float("inf")
    probation_until: float = 0.0
    #: Why the slot is quarantined ("" = it is not).
    quarantine_reason: str = ""

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()


@dataclass(frozen=True)
class Exited:
    """A process the pool found gone, with what it sent before it went."""

    slot: Slot
    code: int | None
    events: list[Any]


class ChildPool:
    def __init__(
        self,
        specs: list[tuple[ChildSpec, str, int | None]],
        max_tasks_per_child: int = 0,
        probe_base_s: float = 60.0,
    ) -> None:
        self.slots = {spec.name: Slot(spec=spec, pool=pool, gpu=gpu) for spec, pool, gpu in specs}
        self.max_tasks_per_child = max_tasks_per_child
        self.probe_base_s = probe_base_s
        #: Quarantined GPUs and why; no slot on them starts again until a probe.
        self.bad_gpus: dict[int, str] = {}

    # ---- starting and stopping ---------------------------------------------------------

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
        if slot.state == "quarantined":
            slot.probation_until = float("inf")  # set for real once the probe boots
        slot.state, slot.task_id, slot.recycle = "starting", None, ""
        slot.started_at, slot.tasks_done, slot.models = time.monotonic(), 0, ()
        slot.cache_seen, slot.cache_bytes, slot.down_reason = (0, 0, 0.0), 0, ""
        slot.rss_bytes = slot.gpu_bytes = 0
        slot.above_soft_at_start, slot.kill_at = False, None
        slot.task_limit = task_limit(self.max_tasks_per_child)

    def due_to_start(self, now: float) -> list[Slot]:
        """Slots to start now: down ones whose backoff is over, quarantined ones whose
        probe is due."""
        return [
            s
            for s in self.slots.values()
            if (s.state == "down" and s.restart_at <= now)
            or (s.state == "quarantined" and s.probe_at <= now)
        ]

    def mark_ready(self, slot: Slot, event: ChildReady, now: float) -> bool:
        """The child finished booting; returns True when a quarantine probe passed."""
        if event.generation != slot.spec.generation or slot.state != "starting":
            return False
        slot.state, slot.models, slot.cache_bytes = "idle", event.models, event.cache_bytes
        slot.idle_since = now
        probed = slot.probation_until == float("inf")
        if probed:
            slot.probation_until = now + PROBATION_S
            slot.crashes.clear()
            slot.quarantine_reason = ""
            if slot.gpu is not None and self.bad_gpus.pop(slot.gpu, None) is not None:
                for other in self.slots.values():  # the GPU works: probe its other slots
                    if other.gpu == slot.gpu and other.state == "quarantined":
                        other.probe_at = min(other.probe_at, now)
        return probed

    def exited(self) -> list[Exited]:
        """Slots whose process has exited since the last look, with the events still in
        their pipes (a child that exits on its own sends its last result first)."""
        gone = []
        for slot in self.slots.values():
            if slot.process is not None and not slot.process.is_alive():
                slot.process.join(timeout=0)
                code = slot.process.exitcode
                slot.process.close()
                slot.process = None
                gone.append(Exited(slot, code, self._drain(slot)))
                self.close_conn(slot)
        return gone

    def _drain(self, slot: Slot) -> list[Any]:
        events: list[Any] = []
        with contextlib.suppress(Exception):  # EOF, or a message cut off by the exit
            while slot.conn is not None and slot.conn.poll() and len(events) < 1000:
                events.append(slot.conn.recv())
        return events

    def mark_down(self, slot: Slot, now: float, counts_as_crash: bool, reason: str) -> bool:
        """Schedule the slot's restart; returns True if it was quarantined instead."""
        slot.task_id = None
        if slot.gpu is not None and slot.gpu in self.bad_gpus:
            return self._quarantine(slot, now, self.bad_gpus[slot.gpu])
        if not counts_as_crash:
            slot.state, slot.restart_at = "down", now
            return False
        if now < slot.probation_until:
            return self._quarantine(slot, now, f"crashed again on probation ({reason})")
        slot.crashes.append(now)
        while slot.crashes and now - slot.crashes[0] > CRASH_WINDOW_S:
            slot.crashes.popleft()
        if len(slot.crashes) >= CRASH_BUDGET:
            return self._quarantine(
                slot, now, f"{len(slot.crashes)} crashes in {CRASH_WINDOW_S:.0f} s"
            )
        delay = min(RESTART_CAP_S, RESTART_BASE_S * 2 ** (len(slot.crashes) - 1))
        slot.state, slot.restart_at = "down", now + delay
        return False

    def backoff(self, slot: Slot, now: float, delay_s: float) -> None:
        """Restart the slot no sooner than ``delay_s`` from now (not a crash)."""
        slot.restart_at = max(slot.restart_at, now + delay_s)

    def _quarantine(self, slot: Slot, now: float, why: str) -> bool:
        slot.quarantines += 1
        slot.state, slot.quarantine_reason = "quarantined", why
        slot.probe_at = now + min(PROBE_CAP_S, self.probe_base_s * 2 ** (slot.quarantines - 1))
        slot.probation_until = 0.0
        return True

    def quarantine_gpu(self, gpu: int, reason: str, now: float) -> list[Slot]:
        """Stop using ``gpu``: idle children on it are asked to exit and busy ones finish
        their task first; none is started again until a probe. Returns its slots."""
        self.bad_gpus.setdefault(gpu, reason)
        on_gpu = [s for s in self.slots.values() if s.gpu == gpu]
        for slot in on_gpu:
            if slot.state == "down":
                self._quarantine(slot, now, reason)
            elif slot.state == "idle":
                self.ask_to_exit(slot)
            elif slot.state in ("busy", "starting"):
                slot.recycle = slot.recycle or "quarantine"
        return on_gpu

    # ---- work ----------------------------------------------------------------------------

    def assign(self, slot: Slot, message: TaskMessage) -> None:
        slot.seq = message.seq
        slot.state, slot.task_id = "busy", message.task_id
        self._send(slot, message)

    def finish_task(self, slot: Slot, event: TaskFinished, now: float) -> tuple[int, int, float]:
        """The child reported its task done: free the slot (or keep it marked for
        recycling). Returns the model-cache counters' growth (hits, misses, load s)."""
        hits, misses, load_s = slot.cache_seen
        growth = (
            max(0, event.cache_hits - hits),
            max(0, event.cache_misses - misses),
            max(0.0, event.cache_load_s - load_s),
        )
        slot.cache_seen = (event.cache_hits, event.cache_misses, event.cache_load_s)
        slot.models, slot.task_id, slot.kill_at = event.models, None, None
        slot.cache_bytes = event.cache_bytes
        slot.tasks_done += 1
        if event.recycle:
            slot.recycle = event.recycle
        if slot.state == "busy":
            slot.state, slot.idle_since = "idle", now
            if slot.task_limit and slot.tasks_done >= slot.task_limit and not slot.recycle:
                slot.recycle = "max_tasks"
        return growth

    def _send(self, slot: Slot, message: TaskMessage | None) -> None:
        # A child that is gone (or going) cannot take it: the reaper reports its task.
        with contextlib.suppress(OSError, AttributeError):
            slot.conn.send(message)

    def next_seq(self, slot: Slot) -> int:
        return slot.seq + 1

    def stop_task(self, slot: Slot, reason: str, grace_s: float, now: float) -> None:
        """Ask the child to abandon its current task; kill it if it has not after
        ``grace_s`` (code inside a child cannot always stop itself)."""
        if slot.cancel is not None:
            slot.cancel.value = slot.seq
        slot.kill_at, slot.kill_reason = now + grace_s, reason

    def mark_recycle(self, slot: Slot, reason: str) -> None:
        if not slot.recycle:
            slot.recycle = reason

    def note_above_soft(self, slot: Slot) -> None:
        slot.above_soft_at_start = True

    def note_memory(self, slot: Slot, rss_bytes: int, gpu_bytes: int) -> None:
        slot.rss_bytes, slot.gpu_bytes = rss_bytes, gpu_bytes

    def kill(self, slot: Slot, down_reason: str) -> None:
        """Kill the child now; ``down_reason`` labels the restart that follows."""
        slot.down_reason = down_reason
        slot.kill_at = None
        if slot.process is not None and slot.process.is_alive():
            slot.process.kill()

    def ask_to_exit(self, slot: Slot) -> None:
        if slot.conn is not None and slot.process is not None:
            self._send(slot, None)
            slot.state = "stopping"

    def park(self, slot: Slot) -> None:
        """Keep a slot down for good (the supervisor is stopping)."""
        if slot.state != "quarantined":
            slot.state = "down"
        slot.restart_at = slot.probe_at = float("inf")

    def stop_all(self, grace_s: float = STOP_GRACE_S) -> None:
        """Ask every child to exit, then TERM, then KILL; reap them all."""
        for slot in self.slots.values():
            if slot.alive:
                self.ask_to_exit(slot)
            self.park(slot)
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

    def close_conn(self, slot: Slot) -> None:
        if slot.conn is not None:
            slot.conn.close()
            slot.conn = None

    # ---- views ---------------------------------------------------------------------------

    def connections(self) -> dict[Any, Slot]:
        """Each live child's pipe, for the main loop to wait on."""
        return {slot.conn: slot for slot in self.slots.values() if slot.conn is not None}

    def capacity(self) -> int:
        return sum(1 for s in self.slots.values() if s.state != "quarantined")

    def healthy(self) -> list[Slot]:
        return [s for s in self.slots.values() if s.state in ("idle", "busy")]

    def serving(self) -> list[Slot]:
        """Slots that run tasks or soon will (booting): what leasing may count on."""
        return [s for s in self.slots.values() if s.state in ("idle", "busy", "starting")]

    def idle(self) -> list[Slot]:
        return [s for s in self.slots.values() if s.state == "idle"]
