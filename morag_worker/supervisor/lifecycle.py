"""Children's lives as the main loop manages them: judging exits, restart reasons, the
crash budget and quarantine, recycling (one at a time), and the watchdog's verdicts.

Every restart has one reason from :data:`RESTART_REASONS` (the label of
``morag_worker_child_restarts_total``). ``crash``, ``boot`` and ``cuda_fatal`` count
against the slot's crash budget (backoff, then quarantine). ``killed`` — an idle child
ended by a signal the supervisor did not send (an operator's ``kill``, the kernel's OOM
killer) — is restarted with a backoff but does not count: such deaths say something
about the host, not about the slot, and quarantining a healthy GPU for them would only
idle it. The others are the supervisor's own decisions and restart the slot at once.

:class:`ChildLifecycle` acts on the pool and judges; what a death means for its task is
returned as a :class:`Death` for the main loop to act on.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from loguru import logger

from morag_worker.observability.metrics import RESTART_REASONS, SupervisorMetrics
from morag_worker.protocol import TaskError
from morag_worker.supervisor.book import Held, LeaseBook
from morag_worker.supervisor.exitcodes import (
    EXIT_BOOT_FAILED,
    EXIT_OK,
    EXIT_RECYCLE,
    describe_exit,
)
from morag_worker.supervisor.pool import ChildPool, Exited, Slot
from morag_worker.supervisor.recent import RecentErrors
from morag_worker.supervisor.watchdog import Watchdog

#: Reasons that count against the slot's crash budget.
CRASH_REASONS = frozenset({"crash", "boot", "cuda_fatal"})
#: A task stopped by the supervisor for one of these reasons restarts with that label; a
#: task that ignored a cancel or a lost lease is counted as ``cancel``/``lost``.
_STOP_REASONS = {
    "timeout": "timeout",
    "memory": "memory",
    "cancel": "cancel",
    "lost": "cancel",
    "unreadable": "crash",
}
#: Restart backoff after ``killed`` deaths: base * 2^(recent kills - 1), capped.
KILLED_BACKOFF_BASE_S = 0.5
KILLED_BACKOFF_CAP_S = 60.0
KILLED_WINDOW_S = 300.0


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
    if code is not None and code < 0 and slot.task_id is None and slot.state == "idle":
        return "killed"
    return "crash"


@dataclass(frozen=True)
class Death:
    """What a child's exit means for the task it held (if any)."""

    slot: Slot
    reason: str
    held: Held | None
    #: The failure to report for ``held``; None when it is to be released instead.
    error: TaskError | None


class ChildLifecycle:
    def __init__(
        self,
        pool: ChildPool,
        book: LeaseBook,
        watchdog: Watchdog,
        metrics: SupervisorMetrics,
        errors: RecentErrors,
    ) -> None:
        self.pool = pool
        self.book = book
        self.watchdog = watchdog
        self.metrics = metrics
        self.errors = errors
        #: Slots waiting for their turn in a rolling recycle (SIGHUP), oldest request first.
        self.rolling: deque[str] = deque()
        self._killed: dict[str, deque[float]] = {}

    # ---- exits -----------------------------------------------------------------------------

    def judge_exit(self, gone: Exited, stopping: bool) -> Death:
        """Restart or quarantine the slot; say what its task (if any) should become.
        Call after the events the child sent before exiting have been handled."""
        slot, code, now = gone.slot, gone.code, time.monotonic()
        held = self.book.get(slot.task_id)
        if held is not None and held.stage == "dropped":
            held = None
        reason = restart_reason(slot, held, code)
        error = None if stopping or held is None else self._error_for(held, slot, code, reason)
        self.metrics.restarts.labels(reason).inc()
        slot.restarts += 1
        # A child over its hard limit before any task (its preload alone is too big)
        # would be killed again at once: count it like a crash, so it backs off.
        too_big = reason == "memory" and slot.tasks_done == 0 and held is None
        quarantined = self.pool.mark_down(slot, now, reason in CRASH_REASONS or too_big, reason)
        if quarantined:
            logger.error(
                "child {} quarantined: {}; probing it again in {:.0f} s",
                slot.name,
                slot.quarantine_reason,
                slot.probe_at - now,
                child=slot.name,
            )
            self.errors.note(
                "quarantine", f"{slot.name}: {slot.quarantine_reason}", child=slot.name
            )
            if slot.gpu is not None:
                self.quarantine_gpu(slot.gpu, f"child {slot.name}: {slot.quarantine_reason}")
        else:
            if reason == "killed":
                self.pool.backoff(slot, now, self._killed_delay(slot, now))
            log = (
                logger.info
                if reason in ("exit", "max_tasks", "reload", "quarantine")
                else (logger.warning)
            )
            log("child {} {} ({})", slot.name, describe_exit(code), reason, child=slot.name)
        return Death(slot, reason, held, error)

    def _killed_delay(self, slot: Slot, now: float) -> float:
        kills = self._killed.setdefault(slot.name, deque())
        kills.append(now)
        while kills and now - kills[0] > KILLED_WINDOW_S:
            kills.popleft()
        return min(KILLED_BACKOFF_CAP_S, KILLED_BACKOFF_BASE_S * 2 ** (len(kills) - 1))

    def _error_for(self, held: Held, slot: Slot, code: int | None, reason: str) -> TaskError:
        if reason == "timeout" and held.stop_reason == "timeout":
            return TaskError.of(
                "timeout",
                f"the task ran past its deadline of {held.spec.timeout_seconds} s and was killed",
                retryable=False,
            )
        if reason == "memory":
            return TaskError.of(
                "memory",
                f"child {slot.name} was killed at its hard memory limit "
                f"(RSS {slot.rss_bytes} bytes, GPU {slot.gpu_bytes} bytes)",
                retryable=True,
            )
        if held.stop_reason == "unreadable":
            return TaskError.of(
                "crash",
                f"child {slot.name} sent a message the supervisor could not read while "
                "running the task, and was killed",
                retryable=True,
            )
        return TaskError.of(
            "crash",
            f"child {slot.name} {describe_exit(code)} while running the task",
            retryable=True,
        )

    # ---- decisions -------------------------------------------------------------------------

    def enforce_limits(self) -> None:
        """Act on the watchdog: kill now, or mark for replacement after the task."""
        for verdict in self.watchdog.check(time.monotonic()):
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
                self.pool.note_above_soft(slot)
            else:
                logger.info("child {} will be recycled: {}", slot.name, verdict.detail)
                self.pool.mark_recycle(slot, verdict.reason)

    def kill(self, slot: Slot, reason: str) -> None:
        """Kill the child now; ``reason`` (a restart reason, or why its task was
        stopped) labels the restart and decides how its task is reported."""
        held = self.book.get(slot.task_id)
        if held is not None:
            self.book.stopping(held, reason)
        self.pool.kill(slot, _STOP_REASONS.get(reason, reason))

    def quarantine_gpu(self, gpu: int, reason: str) -> None:
        if gpu in self.pool.bad_gpus:
            return
        logger.error("GPU {} quarantined: {}", gpu, reason)
        self.errors.note("quarantine", f"GPU {gpu}: {reason}")
        self.pool.quarantine_gpu(gpu, reason, time.monotonic())

    # ---- recycling ---------------------------------------------------------------------------

    def rolling_recycle(self) -> None:
        """Queue every child for replacement (SIGHUP). Only one is taken out of service
        at a time (:meth:`recycle_step`); the others keep taking work meanwhile."""
        for slot in self.pool.slots.values():
            if slot.state in ("idle", "busy", "starting") and slot.name not in self.rolling:
                self.rolling.append(slot.name)

    def recycle_step(self) -> None:
        """Replace children marked for recycling, one at a time, each once it is idle."""
        slots = self.pool.slots
        if any(s.state in ("stopping", "starting") for s in slots.values()):
            return
        if self.rolling and not any(s.recycle for s in slots.values()):
            slot = slots[self.rolling.popleft()]
            if slot.state in ("idle", "busy"):
                self.pool.mark_recycle(slot, "reload")
        for slot in slots.values():
            if slot.recycle and slot.state == "idle":
                logger.info("recycling child {} ({})", slot.name, slot.recycle)
                self.pool.ask_to_exit(slot)
                return
