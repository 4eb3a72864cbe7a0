"""A task's way through the supervisor: leased → inputs downloaded → dispatched to a
child → finished → result uploaded → work dir removed. Also lost and cancelled leases,
deadlines, and tasks this worker cannot read.

:class:`TaskFlow` acts from the main loop only. It holds no state of its own: held
tasks and their stages are the lease book's, slots are the pool's. Nothing one task
carries may stop the loop: whatever goes wrong while handling a task fails that task
(non-retryable when the task itself is at fault) and the supervisor goes on.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from loguru import logger
from pydantic import ValidationError

from morag_worker.observability.metrics import SupervisorMetrics
from morag_worker.protocol import ResultRequest, TaskError, TaskResult
from morag_worker.supervisor.book import IN_CHILD, Held, LeaseBook
from morag_worker.supervisor.disk import DiskGuard
from morag_worker.supervisor.handback import Handback
from morag_worker.supervisor.messages import (
    ChildFailed,
    ChildReady,
    Downloaded,
    InboxItem,
    LeaseCancelled,
    Leased,
    LeaseLost,
    ResultTooLarge,
    TaskFinished,
    TaskMessage,
    TaskProgress,
    TaskStarted,
    Unreadable,
    Uploaded,
    load_result,
)
from morag_worker.supervisor.pool import ChildPool, Slot
from morag_worker.supervisor.recent import RecentErrors
from morag_worker.supervisor.routing import Router
from morag_worker.supervisor.transfers import Transfers

#: After asking a child to stop a task (deadline, cancel, lost lease), kill it if it is
#: still on the task this much later: code inside a child cannot always stop itself.
STOP_GRACE_S = 2.0
#: The child's error type for failures of this worker's own disk or file handles.
INFRA_ERROR = "worker_infrastructure"


@dataclass(frozen=True)
class FlowSettings:
    #: Cap on any task's run time (``--timeout``).
    task_timeout_cap_s: float
    #: Largest result read back from a child (``--max-result-bytes``; 0 = no limit).
    max_result_bytes: int


class TaskFlow:
    def __init__(
        self,
        settings: FlowSettings,
        book: LeaseBook,
        pool: ChildPool,
        router: Router,
        transfers: Transfers,
        handback: Handback,
        disk: DiskGuard,
        metrics: SupervisorMetrics,
        errors: RecentErrors,
        stop_requested: Callable[[], bool],
        wake_leaser: Callable[[], None],
    ) -> None:
        self.settings = settings
        self.book = book
        self.pool = pool
        self.router = router
        self.transfers = transfers
        self.handback = handback
        self.disk = disk
        self.metrics = metrics
        self.errors = errors
        self.stop_requested = stop_requested
        self.wake_leaser = wake_leaser
        #: Tasks whose inputs are in place, in arrival order, waiting for a child.
        self.ready: deque[str] = deque()
        #: Results accepted by the server since the start.
        self.done = 0

    # ---- inbox ---------------------------------------------------------------------------

    def handle(self, item: InboxItem) -> None:
        """Act on one item from a thread; a failure fails that item's task only."""
        try:
            if isinstance(item, Leased):
                self.on_leased(item.task_id)
            elif isinstance(item, Downloaded):
                self.on_downloaded(item)
            elif isinstance(item, Uploaded):
                self.on_uploaded(item)
            elif isinstance(item, (LeaseLost, LeaseCancelled)):
                self.on_lost(item.task_id, "cancel" if isinstance(item, LeaseCancelled) else "lost")
            elif isinstance(item, Unreadable):
                self.on_unreadable(item)
        except Exception as exc:
            self._poisoned(item.task_id, exc)

    def _poisoned(self, task_id: str, exc: Exception) -> None:
        logger.opt(exception=exc).error("handling the task failed", task_id=task_id)
        held = self.book.get(task_id)
        if held is not None and held.stage not in ("uploading", "dropped"):
            message = f"the supervisor could not handle this task: {type(exc).__name__}: {exc}"
            self.fail(held, TaskError.of("supervisor_error", message, retryable=False))

    def on_leased(self, task_id: str) -> None:
        held = self.book.get(task_id)
        if held is None:
            return
        if self.stop_requested() and self.handback.release(held, "worker draining"):
            return
        logger.debug(
            "leased (attempt {})", held.spec.attempt, task_id=task_id, task_type=held.spec.task_type
        )
        if held.spec.input_files:
            self.transfers.download(held)
        else:
            self.on_downloaded(Downloaded(task_id))

    def on_downloaded(self, item: Downloaded) -> None:
        held = self.book.get(item.task_id)
        if held is None or held.stage == "dropped":
            return
        if item.infra:
            self._worker_trouble(held, f"download failed on this worker: {item.error}")
        elif item.error:
            self.fail(held, TaskError.of("download", item.error, retryable=True))
        else:
            if item.spec is not None:
                held.spec = item.spec
            self.book.ready(held)
            self.ready.append(held.task_id)

    def _worker_trouble(self, held: Held, what: str) -> None:
        """This worker's disk or file handles failed, not the task: give it back
        unattempted (or, to a server that cannot take it, report it failed) and stop
        leasing until the work dir is healthy again."""
        if self.handback.gives_back:
            logger.error("{}; the task goes back to the server", what, task_id=held.task_id)
        self.errors.note("infrastructure", what, task_id=held.task_id)
        self.metrics.infra_failures.inc()
        self.disk.report(what)
        if not self.handback.release(held, f"worker infrastructure failure: {what}"):
            self.fail(held, TaskError.of(INFRA_ERROR, what, retryable=True))

    def on_unreadable(self, item: Unreadable) -> None:
        logger.error(
            "leased a task this worker cannot read: {}", item.message, task_id=item.task_id
        )
        self.errors.note("unreadable_task", item.message, task_id=item.task_id)
        if item.task_id and item.lease_token:
            body = ResultRequest(
                lease_token=item.lease_token,
                status="failed",
                error=TaskError.of(
                    "bad_task",
                    f"the worker cannot read this task: {item.message}",
                    retryable=False,
                ),
            )
            self.transfers.upload(item.task_id, body)

    # ---- child events ------------------------------------------------------------------------

    def on_child_event(self, slot: Slot, event: object) -> None:
        """Act on one event from a child's pipe."""
        now = time.monotonic()
        if isinstance(event, ChildReady):
            if self.pool.mark_ready(slot, event, now):
                logger.info("child {} is back in service (quarantine probe passed)", slot.name)
        elif isinstance(event, ChildFailed):
            logger.error("child {} failed to boot: {}", event.child, event.message[:2000])
            self.errors.note("boot", event.message, child=event.child)
        elif isinstance(event, TaskStarted):
            held = self.book.get(event.task_id)
            if held is not None and held.stage == "dispatched":
                self.book.running(held, event.started_at)
        elif isinstance(event, TaskProgress):
            held = self.book.get(event.task_id)
            if held is not None:
                held.progress, held.child_stage = event.progress, event.stage[:64]
        elif isinstance(event, TaskFinished):
            self.on_finished(slot, event)

    def on_finished(self, slot: Slot, event: TaskFinished) -> None:
        hits, misses, load_s = self.pool.finish_task(slot, event, time.monotonic())
        self.metrics.cache_hits.inc(hits)
        self.metrics.cache_misses.inc(misses)
        self.metrics.model_load.inc(load_s)
        if event.recycle == "cuda_fatal" and event.device_fault and slot.gpu is not None:
            self.errors.note("quarantine", f"GPU {slot.gpu}: device fault: {event.error}")
            logger.error("GPU {} quarantined: device fault on {}", slot.gpu, slot.name)
            self.pool.quarantine_gpu(slot.gpu, f"device fault on {slot.name}", time.monotonic())
        held = self.book.get(event.task_id)
        if held is None or held.stage == "dropped":
            if held is not None:
                self.handback.remove_work_dir(held)
            return
        if held.stage not in IN_CHILD:
            return  # already reported (the child's exit was seen first)
        try:
            self._report(held, event)
        except Exception as exc:
            self._poisoned(held.task_id, exc)

    def _report(self, held: Held, event: TaskFinished) -> None:
        held.timings.update({k: float(v) for k, v in event.timings.items()})
        self.metrics.duration.labels(held.spec.task_type, "process").observe(
            held.timings.get("process_s", 0.0)
        )
        if event.ok:
            self._upload_result(held, event.result_json, event.result_path)
            return
        error = _child_error(event.error)
        if error.type == INFRA_ERROR:
            self._worker_trouble(held, error.message)
        else:
            self.fail(held, error)

    def _upload_result(self, held: Held, inline: str, path: str) -> None:
        limit = self.settings.max_result_bytes
        try:
            if inline:
                if limit and len(inline) > limit:
                    raise ResultTooLarge(len(inline), limit)
                result = TaskResult.model_validate_json(inline)
            else:
                result = TaskResult.model_validate(load_result(path, limit))
        except ResultTooLarge as exc:
            self.fail(held, TaskError.of("result_too_large", str(exc), retryable=False))
            return
        except (OSError, ValueError, ValidationError, RecursionError) as exc:
            message = f"the child's result is not a valid result: {exc}"
            self.fail(held, TaskError.of("bad_result", message, retryable=False))
            return
        self.book.uploading(held)
        body = ResultRequest(
            lease_token=held.spec.lease_token,
            status="completed",
            result=result,
            timings=held.timings,
        )
        self.transfers.upload(held.task_id, body)

    def fail(self, held: Held, error: TaskError) -> None:
        logger.warning(
            "task failed: {}: {}",
            error.type,
            error.message[:1000],
            task_id=held.task_id,
            task_type=held.spec.task_type,
        )
        self.errors.note(error.type, error.message, task_id=held.task_id)
        self.book.uploading(held)
        body = ResultRequest(
            lease_token=held.spec.lease_token, status="failed", error=error, timings=held.timings
        )
        self.transfers.upload(held.task_id, body)

    def on_uploaded(self, item: Uploaded) -> None:
        held = self.book.get(item.task_id)
        if held is not None and item.outcome == "refused" and not held.stop_reason:
            # The server refused the result itself (it does not fit the protocol): that
            # is this task's final answer, or its lease would expire and repeat it.
            self.book.stopping(held, "refused")
            message = f"the server refused the result: {item.message}"
            self.fail(held, TaskError.of("invalid_result", message, retryable=False))
            return
        held = self.book.pop(item.task_id)
        if held is None:
            return
        self.done += 1
        self.metrics.tasks.labels(held.spec.task_type, item.outcome).inc()
        self.metrics.duration.labels(held.spec.task_type, "total").observe(
            time.monotonic() - held.leased_at
        )
        if item.outcome == "lease_lost":
            self.metrics.lease_lost.inc()
        logger.info("task {}", item.outcome, task_id=item.task_id, task_type=held.spec.task_type)
        self.handback.remove_work_dir(held)
        self.wake_leaser()

    def on_lost(self, task_id: str, why: str) -> None:
        held = self.book.get(task_id)
        if held is None or held.stage in ("uploading", "dropped"):
            return
        logger.warning(
            "lease {}: stopping the task",
            "cancelled" if why == "cancel" else "lost",
            task_id=task_id,
        )
        if why == "lost":
            self.metrics.lease_lost.inc()
        slot = self.pool.slots.get(held.slot or "")
        previous = self.book.drop(held)
        if previous in IN_CHILD and slot is not None and slot.task_id == task_id:
            self.book.stopping(held, why)
            self.pool.stop_task(slot, why, STOP_GRACE_S, time.monotonic())
        else:
            self.handback.remove_work_dir(held)
        self.wake_leaser()

    # ---- dispatch --------------------------------------------------------------------------

    def dispatch(self) -> None:
        """Give ready tasks to idle children of the right pool; a task no idle child can
        take waits without blocking the tasks behind it, and one no child here can ever
        take (its pool quarantined) goes back to the server for another worker. Once a
        stop signal has arrived nothing new starts, even before the loop has seen it,
        unless the server cannot take tasks back: then every task held must run."""
        if self.stop_requested() and self.handback.gives_back:
            return
        for _ in range(len(self.ready)):
            task_id = self.ready.popleft()
            held = self.book.get(task_id)
            if held is None or held.stage != "ready":
                continue
            try:
                self._place(held)
            except Exception as exc:
                self._poisoned(task_id, exc)

    def _place(self, held: Held) -> None:
        slot = self.router.choose(self._idle(), held.spec.task_type)
        if slot is not None:
            self._send(slot, held)
        elif self.runnable_here(held.spec.task_type):
            self.ready.append(held.task_id)
        elif not self.handback.release(held, "no child on this worker can run it (quarantined)"):
            message = "no child on this worker can run it (quarantined)"
            self.fail(held, TaskError.of("quarantined", message, retryable=True))

    def runnable_here(self, task_type: str) -> bool:
        pools = self.router.pools_for(task_type)
        return any(s.pool in pools and s.state != "quarantined" for s in self.pool.slots.values())

    def _idle(self) -> list[Slot]:
        return [s for s in self.pool.idle() if not s.recycle]

    def _send(self, slot: Slot, held: Held) -> None:
        spec = held.spec
        cap = self.settings.task_timeout_cap_s
        deadline = time.monotonic() + min(spec.timeout_seconds or cap, cap)
        self.book.dispatched(held, slot.name, deadline)
        self.pool.assign(
            slot,
            TaskMessage(
                task_id=spec.task_id,
                task_type=spec.task_type,
                parameters=spec.parameters,
                inputs=tuple(str(p) for p in held.inputs),
                input_names=tuple(f.name for f in spec.input_files),
                work_dir=str(held.work_dir),
                attempt=spec.attempt,
                seq=self.pool.next_seq(slot),
            ),
        )
        self.metrics.duration.labels(spec.task_type, "pickup").observe(
            time.monotonic() - held.leased_at
        )
        logger.debug("dispatched to child {}", slot.name, task_id=spec.task_id)

    # ---- deadlines ---------------------------------------------------------------------------

    def enforce_deadlines(self, kill: Callable[[Slot, str], None]) -> None:
        """Ask children to stop tasks past their deadline; ``kill`` a child still on a
        task it was asked to stop (deadline, cancel, lost lease) once the grace is over.
        The kill is tracked on the slot: a cancelled task has already left the book."""
        now = time.monotonic()
        for held in self.book.all():
            slot = self.pool.slots.get(held.slot or "")
            if slot is None or slot.task_id != held.task_id:
                continue
            if held.deadline is not None and now > held.deadline and not held.stop_reason:
                self.book.stopping(held, "timeout")
                self.pool.stop_task(slot, "timeout", STOP_GRACE_S, now)
        for slot in self.pool.slots.values():
            if slot.kill_at is not None and now >= slot.kill_at and slot.task_id is not None:
                logger.warning(
                    "killing child {}: task did not stop ({})",
                    slot.name,
                    slot.kill_reason,
                    task_id=slot.task_id,
                    child=slot.name,
                )
                kill(slot, slot.kill_reason)


def _child_error(raw: object) -> TaskError:
    """The child's error report as a valid TaskError, whatever it holds."""
    data = raw if isinstance(raw, dict) else {}
    return TaskError.of(
        str(data.get("type") or "internal"),
        str(data.get("message") or "the child reported a failure without a message"),
        retryable=bool(data.get("retryable", True)),
    )
