"""A task's way through the supervisor: leased → inputs downloaded → dispatched to a
child → finished → result uploaded → work dir removed. Also lost and cancelled leases,
deadlines, and giving tasks back on shutdown (children's own lives: ``lifecycle``).

:class:`TaskFlow` holds no state of its own; it acts on the supervisor's book, pool and
ready queue from the main loop only.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from loguru import logger
from pydantic import ValidationError

from morag_worker.protocol import ResultRequest, TaskError, TaskResult
from morag_worker.supervisor import handback
from morag_worker.supervisor.child import read_result
from morag_worker.supervisor.leases import Held
from morag_worker.supervisor.messages import (
    ChildFailed,
    ChildReady,
    TaskFinished,
    TaskMessage,
    TaskProgress,
    TaskStarted,
)

if TYPE_CHECKING:
    from morag_worker.supervisor.pool import Slot
    from morag_worker.supervisor.supervisor import Supervisor

#: After asking a child to stop a task (deadline, cancel, lost lease), kill it if it is
#: still on the task this much later: code inside a child cannot always stop itself.
STOP_GRACE_S = 2.0


class TaskFlow:
    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup

    # ---- inbox ---------------------------------------------------------------------------

    def handle(self, item: tuple[Any, ...]) -> None:
        kind = item[0]
        if kind == "child":
            self.on_child_event(item[1])
        elif kind == "leased":
            self.on_leased(item[1])
        elif kind == "downloaded":
            self.on_downloaded(item[1], item[2])
        elif kind == "uploaded":
            self.on_uploaded(item[1], item[2])
        elif kind in ("lost", "cancel"):
            self.on_lost(item[1], kind)

    def on_leased(self, task_id: str) -> None:
        held = self.sup.book.get(task_id)
        if held is None:
            return
        if self.sup.draining:
            self.release(held, "worker draining")
            return
        logger.debug(
            "leased (attempt {})", held.spec.attempt, task_id=task_id, task_type=held.spec.task_type
        )
        if held.spec.input_files:
            assert self.sup.transfers is not None
            self.sup.transfers.download(held)
        else:
            self.on_downloaded(task_id, None)

    def on_downloaded(self, task_id: str, error: str | None) -> None:
        held = self.sup.book.get(task_id)
        if held is None or held.stage == "dropped":
            return
        held.timings["download_s"] = time.monotonic() - held.leased_at
        if error is not None:
            self.fail(held, TaskError(type="download", message=error, retryable=True))
            return
        held.stage = "ready"
        self.sup.ready.append(task_id)

    def on_child_event(self, event: Any) -> None:
        slot = self.sup.pool.slots.get(getattr(event, "child", ""))
        if slot is None:
            return
        if isinstance(event, ChildReady):
            if event.generation == slot.spec.generation and slot.state == "starting":
                slot.state, slot.models = "idle", event.models
                slot.cache_bytes = event.cache_bytes
                self.sup.lifecycle.became_idle(slot)
        elif isinstance(event, ChildFailed):
            logger.error("child {} failed to boot: {}", event.child, event.message)
            self.sup.note_error("boot", event.message, child=event.child)
        elif isinstance(event, TaskStarted):
            held = self.sup.book.get(event.task_id)
            if held is not None:
                held.stage, held.started_at = "running", event.started_at
        elif isinstance(event, TaskProgress):
            held = self.sup.book.get(event.task_id)
            if held is not None:
                held.progress, held.child_stage = event.progress, event.stage
        elif isinstance(event, TaskFinished):
            self.on_finished(slot, event)

    def on_finished(self, slot: Slot, event: TaskFinished) -> None:
        m = self.sup.metrics
        hits, misses, load_s = slot.cache_seen
        m.cache_hits.inc(max(0, event.cache_hits - hits))
        m.cache_misses.inc(max(0, event.cache_misses - misses))
        m.model_load.inc(max(0.0, event.cache_load_s - load_s))
        slot.cache_seen = (event.cache_hits, event.cache_misses, event.cache_load_s)
        slot.models, slot.task_id, slot.kill_at = event.models, None, None
        slot.tasks_done += 1
        self.sup.lifecycle.finished(slot, event)
        if slot.state == "busy":
            slot.state = "idle"
            self.sup.lifecycle.became_idle(slot)
        held = self.sup.book.get(event.task_id)
        if held is None or held.stage == "dropped":
            self._cleanup(held)
            return
        if held.stage not in ("dispatched", "running"):
            return  # already reported (the child's exit was seen first)
        held.timings.update(event.timings)
        m.duration.labels(held.spec.task_type, "process").observe(
            event.timings.get("process_s", 0.0)
        )
        if event.ok:
            self._upload_result(held, event.result_json, event.result_path)
        else:
            self.fail(held, TaskError.model_validate(event.error))

    def _upload_result(self, held: Held, inline: str, path: str) -> None:
        try:
            if inline:
                result = TaskResult.model_validate_json(inline)
            else:
                result = TaskResult.model_validate(read_result(path))
        except (OSError, ValueError, ValidationError) as exc:
            self.fail(
                held,
                TaskError(
                    type="internal",
                    retryable=True,
                    message=f"the child's result could not be read: {exc}",
                ),
            )
            return
        held.stage = "uploading"
        assert self.sup.transfers is not None
        self.sup.transfers.upload(
            held,
            ResultRequest(
                lease_token=held.spec.lease_token,
                status="completed",
                result=result,
                timings=held.timings,
            ),
        )

    def fail(self, held: Held, error: TaskError) -> None:
        logger.warning(
            "task failed: {}: {}",
            error.type,
            error.message,
            task_id=held.task_id,
            task_type=held.spec.task_type,
        )
        self.sup.note_error(error.type, error.message, task_id=held.task_id)
        held.stage = "uploading"
        assert self.sup.transfers is not None
        self.sup.transfers.upload(
            held,
            ResultRequest(
                lease_token=held.spec.lease_token,
                status="failed",
                error=error,
                timings=held.timings,
            ),
        )

    def on_uploaded(self, task_id: str, outcome: str) -> None:
        held = self.sup.book.pop(task_id)
        if held is None:
            return
        self.sup.done += 1
        self.sup.metrics.tasks.labels(held.spec.task_type, outcome).inc()
        self.sup.metrics.duration.labels(held.spec.task_type, "total").observe(
            time.monotonic() - held.leased_at
        )
        if outcome == "lease_lost":
            self.sup.metrics.lease_lost.inc()
        logger.info("task {}", outcome, task_id=task_id, task_type=held.spec.task_type)
        self._cleanup(held)
        self._wake_leaser()

    def on_lost(self, task_id: str, why: str) -> None:
        held = self.sup.book.get(task_id)
        if held is None or held.stage in ("uploading", "dropped"):
            return
        logger.warning(
            "lease {}: stopping the task",
            "cancelled" if why == "cancel" else "lost",
            task_id=task_id,
        )
        if why == "lost":
            self.sup.metrics.lease_lost.inc()
        previous, held.stage = held.stage, "dropped"
        if previous == "running" and held.slot:
            self._stop_in_child(held, why)
        self.sup.book.pop(task_id)
        if previous != "running":
            self._cleanup(held)
        self._wake_leaser()

    # ---- dispatch --------------------------------------------------------------------------

    def dispatch(self) -> None:
        """Give ready tasks to idle children of the right pool; a task no idle child can
        take waits without blocking the tasks behind it, and one no child here can ever
        take (its pool quarantined) goes back to the server for another worker."""
        waiting = len(self.sup.ready)
        for _ in range(waiting):
            task_id = self.sup.ready.popleft()
            held = self.sup.book.get(task_id)
            if held is None or held.stage != "ready":
                continue
            slot = self.sup.router.choose(self._idle(), held.spec.task_type)
            if slot is not None:
                self._send(slot, held)
            elif self._runnable_here(held.spec.task_type):
                self.sup.ready.append(task_id)
            else:
                self.release(held, "no child on this worker can run it (quarantined)")

    def _runnable_here(self, task_type: str) -> bool:
        pools = self.sup.router.pools_for(task_type)
        return any(
            s.pool in pools and s.state != "quarantined" for s in self.sup.pool.slots.values()
        )

    def _idle(self) -> list[Slot]:
        return [s for s in self.sup.pool.idle() if not s.recycle]

    def _send(self, slot: Slot, held: Held) -> None:
        seq = self.sup.pool.next_seq(slot)
        spec = held.spec
        cap = self.sup.config.task_timeout_cap_s
        held.deadline = time.monotonic() + min(spec.timeout_seconds or cap, cap)
        held.slot, held.stage = slot.name, "dispatched"
        self.sup.pool.dispatch(
            slot,
            TaskMessage(
                task_id=spec.task_id,
                task_type=spec.task_type,
                parameters=spec.parameters,
                inputs=tuple(str(p) for p in held.inputs),
                input_names=tuple(f.name for f in spec.input_files),
                work_dir=str(held.work_dir),
                attempt=spec.attempt,
                seq=seq,
            ),
        )
        self.sup.metrics.duration.labels(spec.task_type, "pickup").observe(
            time.monotonic() - held.leased_at
        )

    # ---- children ----------------------------------------------------------------------------

    def enforce_deadlines(self) -> None:
        """Ask children to stop tasks past their deadline; kill a child still on a task
        it was asked to stop (deadline, cancel, lost lease) once the grace is over. The
        kill is tracked on the slot: a cancelled task has already left the book."""
        now = time.monotonic()
        for held in self.sup.book.all():
            slot = self.sup.pool.slots.get(held.slot or "")
            if slot is None or slot.task_id != held.task_id:
                continue
            if held.deadline is not None and now > held.deadline and not held.stop_reason:
                self._stop_in_child(held, "timeout")
        for slot in self.sup.pool.slots.values():
            if slot.kill_at is not None and now >= slot.kill_at and slot.task_id is not None:
                logger.warning(
                    "killing child {}: task did not stop ({})",
                    slot.name,
                    slot.kill_reason,
                    task_id=slot.task_id,
                    child=slot.name,
                )
                slot.kill_at = None
                self.sup.lifecycle.kill(slot, slot.kill_reason)

    def _stop_in_child(self, held: Held, reason: str) -> None:
        slot = self.sup.pool.slots.get(held.slot or "")
        if slot is None or slot.task_id != held.task_id:
            return
        held.stop_reason = reason
        slot.kill_at, slot.kill_reason = time.monotonic() + STOP_GRACE_S, reason
        self.sup.pool.cancel_current(slot)

    # ---- small helpers --------------------------------------------------------------------------

    def release(self, held: Held, reason: str) -> None:
        handback.release(self.sup, held, reason)

    def _cleanup(self, held: Held | None) -> None:
        if held is not None:
            handback.remove_work_dir(held)

    def _wake_leaser(self) -> None:
        if self.sup.leaser is not None:
            self.sup.leaser.wake.set()
