"""Children's lives as the main loop manages them: reaping, restart reasons, the crash
budget and quarantine, recycling (one at a time), and acting on the watchdog's verdicts.

Every restart has one reason from :data:`RESTART_REASONS` (the label of
``morag_worker_child_restarts_total``). ``crash``, ``boot`` and ``cuda_fatal`` count
against the slot's crash budget (backoff, then quarantine); the others are the
supervisor's own decisions and restart the slot at once.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING

from loguru import logger

from morag_worker.observability.metrics import RESTART_REASONS
from morag_worker.protocol import TaskError
from morag_worker.supervisor.exitcodes import (
    EXIT_BOOT_FAILED,
    EXIT_OK,
    EXIT_RECYCLE,
    describe_exit,
)
from morag_worker.supervisor.messages import TaskFinished

if TYPE_CHECKING:
    from morag_worker.supervisor.leases import Held
    from morag_worker.supervisor.pool import Slot
    from morag_worker.supervisor.supervisor import Supervisor

#: Reasons that count against the slot's crash budget.
CRASH_REASONS = frozenset({"crash", "boot", "cuda_fatal"})
#: A task stopped by the supervisor for one of these reasons restarts with that label; a
#: task that ignored a cancel or a lost lease outlived its allowed time, like a timeout.
_STOP_REASONS = {"timeout": "timeout", "memory": "memory", "cancel": "timeout", "lost": "timeout"}


def restart_reason(slot: Slot, held: Held | None, code: int | None) -> str:
    """Why the slot's process ended, as one of :data:`RESTART_REASONS`."""
    if held is not None and held.stop_reason in _STOP_REASONS:
        return _STOP_REASONS[held.stop_reason]
    if slot.down_reason in RESTART_REASONS:
        return slot.down_reason
    if code == EXIT_BOOT_FAILED:
        return "boot"
    planned = slot.recycle if slot.recycle in RESTART_REASONS else "exit"
    if code == EXIT_RECYCLE:
        return planned
    if code == EXIT_OK and slot.task_id is None:
        return planned
    return "crash"


class ChildLifecycle:
    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup
        #: Slots waiting for their turn in a rolling recycle (SIGHUP), oldest request first.
        self.rolling: deque[str] = deque()

    # ---- events from children --------------------------------------------------------------

    def became_idle(self, slot: Slot) -> None:
        slot.idle_since = time.monotonic()
        if slot.task_limit and slot.tasks_done >= slot.task_limit and not slot.recycle:
            slot.recycle = "max_tasks"

    def finished(self, slot: Slot, event: TaskFinished) -> None:
        """Per-child consequences of a finished task (the task's own are the flow's)."""
        slot.cache_bytes = event.cache_bytes
        if event.recycle:
            slot.recycle = event.recycle
        if event.recycle == "cuda_fatal" and event.device_fault and slot.gpu is not None:
            self.quarantine_gpu(slot.gpu, f"device fault on {slot.name}: {event.error}")

    # ---- reaping ---------------------------------------------------------------------------

    def reap_children(self) -> None:
        now = time.monotonic()
        for slot, code in self.sup.pool.exited():
            if slot.task_id is not None and code in (EXIT_OK, EXIT_RECYCLE):
                self._await_finish(slot)
            held = self.sup.book.get(slot.task_id) if slot.task_id else None
            reason = restart_reason(slot, held, code)
            # Children stopped by the shutdown itself: their tasks are released, not failed.
            if held is not None and held.stage != "dropped" and not self.sup.children_stopped:
                self._child_died_with(held, slot, code, reason)
            self.sup.metrics.restarts.labels(reason).inc()
            slot.restarts += 1
            # A child over its hard limit before any task (its preload alone is too big)
            # would be killed again at once: count it like a crash, so it backs off.
            too_big = reason == "memory" and slot.tasks_done == 0 and held is None
            if self.sup.pool.mark_down(slot, now, reason in CRASH_REASONS or too_big):
                gpu = -1 if slot.gpu is None else slot.gpu
                why = self.sup.pool.bad_gpus.get(gpu, "it keeps crashing")
                logger.error("child {} quarantined: {}", slot.name, why, child=slot.name)
                self.sup.note_error("quarantine", f"{slot.name}: {why}", child=slot.name)
                if slot.gpu is not None:
                    self.quarantine_gpu(slot.gpu, f"child {slot.name} kept crashing")
            else:
                logger.warning(
                    "child {} {} ({})", slot.name, describe_exit(code), reason, child=slot.name
                )
            if self.sup.draining:
                slot.state = "down" if slot.state != "quarantined" else slot.state
                slot.restart_at = float("inf")

    def _await_finish(self, slot: Slot) -> None:
        """A child that exits on its own sends its last task's result first; let that
        event arrive (through the event thread) before judging the exit."""
        end = time.monotonic() + 1.0
        while slot.task_id is not None and time.monotonic() < end:
            self.sup.wait_for_inbox(0.05)

    def _child_died_with(self, held: Held, slot: Slot, code: int | None, reason: str) -> None:
        if reason == "timeout" and held.stop_reason == "timeout":
            error = TaskError(
                type="timeout",
                retryable=False,
                message=f"the task ran past its deadline of "
                f"{held.spec.timeout_seconds} s and was killed",
            )
        elif reason == "memory":
            error = TaskError(
                type="memory",
                retryable=True,
                message=f"child {slot.name} was killed at its hard memory limit "
                f"(RSS {slot.rss_bytes} bytes, GPU {slot.gpu_bytes} bytes)",
            )
        else:
            error = TaskError(
                type="crash",
                retryable=True,
                message=f"child {slot.name} {describe_exit(code)} while running the task",
            )
        self.sup.flow.fail(held, error)

    # ---- decisions -------------------------------------------------------------------------

    def enforce_limits(self) -> None:
        """Act on the watchdog: kill now, or mark for replacement after the task."""
        for verdict in self.sup.watchdog.check(time.monotonic()):
            slot = verdict.slot
            if verdict.action == "kill":
                logger.warning(
                    "killing child {} ({}): {}",
                    slot.name,
                    verdict.reason,
                    verdict.detail,
                    child=slot.name,
                    task_id=slot.task_id,
                )
                self.kill(slot, verdict.reason)
            elif slot.recycle or slot.above_soft_at_start:
                continue
            elif slot.tasks_done == 0 and slot.task_id is None:
                # A fresh child already over the soft limit: replacing it cannot help
                # (its preloaded models alone exceed it). Say so once and keep it.
                logger.warning(
                    "child {} starts above its soft limit: {}",
                    slot.name,
                    verdict.detail,
                    child=slot.name,
                )
                slot.above_soft_at_start = True
            else:
                logger.info("child {} will be recycled: {}", slot.name, verdict.detail)
                slot.recycle = verdict.reason

    def kill(self, slot: Slot, reason: str) -> None:
        """Kill the child now; ``reason`` (a restart reason, or why its task was
        stopped) labels the restart and decides how its task is reported."""
        slot.down_reason = _STOP_REASONS.get(reason, reason)
        held = self.sup.book.get(slot.task_id) if slot.task_id else None
        if held is not None and not held.stop_reason:
            held.stop_reason = reason
        self.sup.pool.kill(slot)

    def quarantine_gpu(self, gpu: int, reason: str) -> None:
        if gpu in self.sup.pool.bad_gpus:
            return
        logger.error("GPU {} quarantined: {}", gpu, reason)
        self.sup.note_error("quarantine", f"GPU {gpu}: {reason}")
        self.sup.pool.quarantine_gpu(gpu, reason)

    # ---- recycling ---------------------------------------------------------------------------

    def rolling_recycle(self) -> None:
        """Queue every child for replacement (SIGHUP). Only one is taken out of service
        at a time (:meth:`recycle_step`); the others keep taking work meanwhile."""
        for slot in self.sup.pool.slots.values():
            if slot.state in ("idle", "busy", "starting") and slot.name not in self.rolling:
                self.rolling.append(slot.name)

    def recycle_step(self) -> None:
        """Replace children marked for recycling, one at a time, each once it is idle."""
        slots = self.sup.pool.slots
        if any(s.state in ("stopping", "starting") for s in slots.values()):
            return
        if self.rolling and not any(s.recycle for s in slots.values()):
            slot = slots[self.rolling.popleft()]
            if slot.state in ("idle", "busy"):
                slot.recycle = "reload"
        for slot in slots.values():
            if slot.recycle and slot.state == "idle":
                logger.info("recycling child {} ({})", slot.name, slot.recycle)
                self.sup.pool.ask_to_exit(slot)
                return
