"""The supervisor's steps one at a time, as gunicorn's tests drive ``reap_workers``.

The task flow, the lifecycle and the pool are the real classes; what they would send
over the network or into a process is caught by small recorders at that boundary
(:class:`Recorder` for transfers and the client, :class:`Pipe` for a child's pipe), and
slots have no process behind them. The real-process tests (``tests/integration``,
``tests/faults``) cover the same paths end to end.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from morag_worker.config import parse_pool_types
from morag_worker.observability.metrics import SupervisorMetrics
from morag_worker.processors.settings import ProcessorSettings
from morag_worker.protocol import ResultRequest, TaskSpec
from morag_worker.supervisor.book import Held, LeaseBook
from morag_worker.supervisor.disk import DiskGuard
from morag_worker.supervisor.handback import Handback
from morag_worker.supervisor.lifecycle import ChildLifecycle
from morag_worker.supervisor.messages import (
    ChildReady,
    ChildSpec,
    Downloaded,
    LeaseLost,
    TaskFinished,
    TaskMessage,
    Unreadable,
    Uploaded,
)
from morag_worker.supervisor.pool import CRASH_BUDGET, ChildPool, Exited, Slot
from morag_worker.supervisor.recent import RecentErrors
from morag_worker.supervisor.routing import Router
from morag_worker.supervisor.tasks import STOP_GRACE_S, FlowSettings, TaskFlow


class Recorder:
    """Stands in for Transfers and for the link's release call (network boundary)."""

    #: A server that takes tasks back (this project's own protocol).
    gives_back = True

    def __init__(self) -> None:
        self.downloads: list[str] = []
        self.uploads: list[tuple[str, ResultRequest]] = []
        self.releases: list[tuple[str, str]] = []

    def download(self, held: Held) -> None:
        self.downloads.append(held.task_id)

    def upload(self, task_id: str, body: ResultRequest) -> None:
        self.uploads.append((task_id, body))

    def release(self, task_id: str, token: str, reason: str, retry_for_s: float) -> None:
        self.releases.append((task_id, reason))


class Pipe:
    """A child's end as the pool sees it: what the supervisor sent."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def send(self, message: Any) -> None:
        self.sent.append(message)


class _Value:
    def __init__(self) -> None:
        self.value = 0


class Steps:
    def __init__(self, tmp_path: Path, *names: str, gives_back: bool = True) -> None:
        self.rec = Recorder()
        self.rec.gives_back = gives_back
        self.book = LeaseBook()
        self.pool = ChildPool([])
        for name in names:
            spec = ChildSpec(name, 1, "cpu", {}, frozenset(), ProcessorSettings())
            self.pool.slots[name] = Slot(
                spec=spec, pool="cpu", state="idle", conn=Pipe(), cancel=_Value()
            )
        self.metrics = SupervisorMetrics("w")
        self.errors = RecentErrors()
        self.disk = DiskGuard(tmp_path, 0)
        self.stopping = False
        self.handback = Handback(self.rec, self.book)  # type: ignore[arg-type]
        self.flow = TaskFlow(
            FlowSettings(task_timeout_cap_s=3600, max_result_bytes=1 << 20),
            self.book,
            self.pool,
            Router(parse_pool_types("cpu=noop"), {"cpu"}),
            self.rec,  # type: ignore[arg-type]
            self.handback,
            self.disk,
            self.metrics,
            self.errors,
            stop_requested=lambda: self.stopping,
            wake_leaser=lambda: None,
        )
        self.lifecycle = ChildLifecycle(
            self.pool,
            self.book,
            None,
            self.metrics,
            self.errors,  # type: ignore[arg-type]
        )
        self.tmp = tmp_path

    def lease(self, task_id: str, files: int = 0) -> Held:
        spec = TaskSpec(
            task_id=task_id,
            task_type="noop",
            lease_token=f"tok-{task_id}",
            lease_expires_at=time.time() + 30,
            attempt=1,
            max_attempts=3,
            input_files=[
                {"file_id": "f" * 64, "name": "a.txt", "size": 1, "sha256": "0" * 64, "url": "/x"}
            ]
            * files,
        )
        held = Held(spec=spec, work_dir=self.tmp / task_id)
        self.book.add(held)
        return held

    def ready(self, task_id: str) -> Held:
        held = self.lease(task_id)
        self.flow.on_leased(task_id)
        return held


def test_a_ready_task_goes_to_an_idle_child(tmp_path: Path) -> None:
    s = Steps(tmp_path, "cpu0")
    held = s.ready("t1")
    s.flow.dispatch()
    slot = s.pool.slots["cpu0"]
    sent = slot.conn.sent
    assert len(sent) == 1 and isinstance(sent[0], TaskMessage) and sent[0].task_id == "t1"
    assert slot.state == "busy" and slot.task_id == "t1" and held.stage == "dispatched"
    assert held.deadline is not None and held.slot == "cpu0"


def test_nothing_is_dispatched_once_a_stop_is_requested(tmp_path: Path) -> None:
    s = Steps(tmp_path, "cpu0")
    held = s.ready("t1")
    s.stopping = True
    s.flow.dispatch()
    assert s.pool.slots["cpu0"].conn.sent == [] and held.stage == "ready"
    s.flow.on_leased(s.lease("t2").task_id)  # leased during the stop: straight back
    assert s.rec.releases == [("t2", "worker draining")]


def test_a_task_no_child_here_can_run_goes_back(tmp_path: Path) -> None:
    s = Steps(tmp_path, "cpu0")
    s.pool.slots["cpu0"].state = "quarantined"
    s.ready("t1")
    s.flow.dispatch()
    assert s.rec.releases == [("t1", "no child on this worker can run it (quarantined)")]
    assert s.book.get("t1") is None


def test_reaping_a_child_that_died_mid_task_fails_the_task(tmp_path: Path) -> None:
    s = Steps(tmp_path, "cpu0")
    s.ready("t1")
    s.flow.dispatch()
    slot = s.pool.slots["cpu0"]
    death = s.lifecycle.judge_exit(Exited(slot, -9, []), stopping=False)
    assert death.reason == "crash" and death.held is not None and death.error is not None
    assert death.error.retryable and "killed by SIGKILL" in death.error.message
    assert slot.state == "down" and len(slot.crashes) == 1


def test_a_dead_childs_last_result_counts_before_its_death(tmp_path: Path) -> None:
    s = Steps(tmp_path, "cpu0")
    s.ready("t1")
    s.flow.dispatch()
    slot = s.pool.slots["cpu0"]
    finished = TaskFinished("cpu0", "t1", ok=True, result_json='{"content": "done"}')
    s.flow.on_child_event(slot, finished)  # the loop handles what the pipe held first
    death = s.lifecycle.judge_exit(Exited(slot, 4, []), stopping=False)
    assert death.held is None and death.error is None  # the task had already finished
    assert [(t, b.status) for t, b in s.rec.uploads] == [("t1", "completed")]


def test_a_deadline_asks_the_child_then_kills_it(tmp_path: Path) -> None:
    s = Steps(tmp_path, "cpu0")
    held = s.ready("t1")
    s.flow.dispatch()
    held.deadline = time.monotonic() - 1
    killed: list[tuple[str, str]] = []
    s.flow.enforce_deadlines(lambda slot, why: killed.append((slot.name, why)))
    slot = s.pool.slots["cpu0"]
    assert held.stop_reason == "timeout" and slot.cancel.value == slot.seq and killed == []
    slot.kill_at = time.monotonic() - 0.001  # the grace is over
    s.flow.enforce_deadlines(lambda slot, why: killed.append((slot.name, why)))
    assert killed == [("cpu0", "timeout")]
    assert STOP_GRACE_S > 0


def test_a_lost_lease_drops_the_task_and_stops_its_child(tmp_path: Path) -> None:
    s = Steps(tmp_path, "cpu0")
    s.ready("t1")
    s.flow.dispatch()
    s.flow.handle(LeaseLost("t1"))
    slot = s.pool.slots["cpu0"]
    assert s.book.get("t1") is None and slot.kill_at is not None and slot.kill_reason == "lost"
    waiting = s.ready("t2")
    (tmp_path / "t2").mkdir()
    s.flow.handle(LeaseLost("t2"))
    assert s.book.get("t2") is None and not waiting.work_dir.exists()


def test_drain_releases_what_has_not_started(tmp_path: Path) -> None:
    s = Steps(tmp_path, "cpu0")
    s.ready("running")
    s.flow.dispatch()
    s.ready("waiting")
    s.lease("downloading", files=1)
    s.handback.release_unstarted("worker draining")
    assert sorted(t for t, _ in s.rec.releases) == ["downloading", "waiting"]
    assert s.handback.running() and s.book.get("running") is not None


def test_without_release_a_drain_runs_what_has_not_started(tmp_path: Path) -> None:
    """A server that cannot take tasks back (MoRAG's remote-jobs): every task held runs."""
    s = Steps(tmp_path, "cpu0", gives_back=False)
    s.ready("running")
    s.flow.dispatch()
    s.ready("waiting")
    s.lease("downloading", files=1)
    s.stopping = True
    s.handback.release_unstarted("worker draining")
    assert s.rec.releases == [] and s.book.get("waiting") is not None
    s.flow.on_leased(s.lease("late", files=1).task_id)  # polled as the stop came: fetched
    assert s.rec.downloads == ["late"]
    finished = TaskFinished("cpu0", "running", ok=True, result_json='{"content": "done"}')
    s.flow.on_child_event(s.pool.slots["cpu0"], finished)
    s.flow.handle(Uploaded("running", "completed"))
    assert s.handback.running()  # unstarted tasks still count: the drain waits for them
    s.flow.dispatch()
    assert s.pool.slots["cpu0"].task_id == "waiting"  # started although a stop is requested
    kept = s.handback.release_all("worker stopped before the task finished")
    assert sorted(h.task_id for h in kept) == ["downloading", "late", "waiting"]
    assert s.rec.releases == []


def test_without_release_what_cannot_run_here_is_reported_failed(tmp_path: Path) -> None:
    s = Steps(tmp_path, "cpu0", gives_back=False)
    s.pool.slots["cpu0"].state = "quarantined"
    s.ready("t1")
    s.flow.dispatch()
    s.lease("t2", files=1)
    s.flow.on_leased("t2")
    s.flow.handle(Downloaded("t2", "ENOSPC: No space left on device", infra=True))
    failures = {t: b.error.type for t, b in s.rec.uploads if b.error is not None}
    assert failures == {"t1": "quarantined", "t2": "worker_infrastructure"}
    assert s.rec.releases == [] and "No space left" in s.disk.problem


def test_a_download_that_completes_the_task_is_adopted(tmp_path: Path) -> None:
    s = Steps(tmp_path, "cpu0")
    held = s.lease("t1", files=1)
    s.flow.on_leased("t1")
    named = held.spec.model_copy(update={"parameters": {"echo": "from the file"}})
    s.flow.handle(Downloaded("t1", spec=named))
    s.flow.dispatch()
    (sent,) = s.pool.slots["cpu0"].conn.sent
    assert sent.parameters == {"echo": "from the file"}


def test_an_infrastructure_failure_releases_and_pauses_leasing(tmp_path: Path) -> None:
    s = Steps(tmp_path, "cpu0")
    s.lease("t1", files=1)
    s.flow.on_leased("t1")
    assert s.rec.downloads == ["t1"]
    s.flow.handle(Downloaded("t1", "ENOSPC: No space left on device", infra=True))
    assert s.rec.releases and s.rec.releases[0][0] == "t1"
    assert s.rec.uploads == []  # not a failure of the task
    assert "No space left" in s.disk.problem


def test_failures_during_a_pause_do_not_lengthen_it(tmp_path: Path) -> None:
    """Found by the chaos campaign (disk-worker): the tasks in flight when the disk
    filled each failed and each doubled the pause (5, 10, 20 s), so leasing resumed 20 s
    after space came back. One episode is one pause."""
    guard = DiskGuard(tmp_path, 0)
    for at in (100.0, 100.1, 100.2):  # three prefetched downloads fail together
        guard.report("ENOSPC", now=at)
    assert guard.check(now=104.0) != ""
    assert guard.check(now=105.1) == ""  # 5 s after the first, not 20
    guard.report("ENOSPC", now=200.0)  # a new episode after recovery: 5 s again
    assert guard.check(now=204.9) != "" and guard.check(now=205.1) == ""


def test_an_unreadable_task_is_failed_for_good(tmp_path: Path) -> None:
    s = Steps(tmp_path, "cpu0")
    s.flow.handle(Unreadable("t9", "tok9", "parameters: input should be a dict"))
    [(task_id, body)] = s.rec.uploads
    assert task_id == "t9" and body.status == "failed" and body.error is not None
    assert body.error.type == "bad_task" and not body.error.retryable


def test_a_result_the_server_refuses_becomes_a_final_failure(tmp_path: Path) -> None:
    s = Steps(tmp_path, "cpu0")
    s.ready("t1")
    s.flow.dispatch()
    finished = TaskFinished("cpu0", "t1", ok=True, result_json='{"content": "x"}')
    s.flow.on_child_event(s.pool.slots["cpu0"], finished)
    s.flow.handle(Uploaded("t1", "refused", "result.chunks[1].index: duplicate index 0"))
    last = s.rec.uploads[-1][1]
    assert last.status == "failed" and last.error is not None
    assert last.error.type == "invalid_result" and "duplicate index" in last.error.message
    s.flow.handle(Uploaded("t1", "failed"))
    assert s.book.get("t1") is None and s.flow.done == 1


def test_an_error_in_one_task_never_escapes_the_step(tmp_path: Path) -> None:
    s = Steps(tmp_path, "cpu0")
    s.ready("t1")
    s.flow.dispatch()
    odd = TaskFinished("cpu0", "t1", ok=False, error={"type": "x" * 500, "message": "y" * 10**6})
    s.flow.on_child_event(s.pool.slots["cpu0"], odd)
    body = s.rec.uploads[-1][1]
    assert body.error is not None and len(body.error.type) <= 64
    assert "characters cut" in body.error.message


@pytest.mark.parametrize("probe_s", [3.0])
def test_quarantine_is_probed_then_probation(tmp_path: Path, probe_s: float) -> None:
    pool = ChildPool([], probe_base_s=probe_s)
    spec = ChildSpec("cpu0", 1, "cpu", {}, frozenset(), ProcessorSettings())
    slot = pool.slots["cpu0"] = Slot(spec=spec, pool="cpu", state="starting")
    now = 1000.0
    for n in range(CRASH_BUDGET):
        quarantined = pool.mark_down(slot, now + n, True, "boot")
    assert quarantined and slot.state == "quarantined"
    assert slot.probe_at == pytest.approx(now + CRASH_BUDGET - 1 + probe_s)
    assert pool.due_to_start(slot.probe_at - 0.1) == []
    assert pool.due_to_start(slot.probe_at) == [slot]
    slot.state, slot.probation_until = "starting", float("inf")  # what start() does
    assert pool.mark_ready(slot, ChildReady("cpu0", 1, 1), now + 100)
    assert slot.state == "idle" and slot.probation_until == now + 100 + 300
    slot.state = "busy"
    assert pool.mark_down(slot, now + 101, True, "crash")  # crashed on probation
    assert slot.quarantines == 2 and slot.probe_at == pytest.approx(now + 101 + 2 * probe_s)
