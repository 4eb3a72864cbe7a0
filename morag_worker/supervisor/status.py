"""What the supervisor tells the outside: health, readiness, status, metrics, systemd,
and the status report its heartbeats carry to the server's dashboard.

All views are snapshots read from other threads (the HTTP thread, a Prometheus scrape,
the heartbeat thread): they read the :class:`RunState` the main loop refreshes, the pool
and the lease book, and never change anything.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from loguru import logger

from morag_worker import __version__
from morag_worker.observability import sdnotify
from morag_worker.observability.metrics import SupervisorMetrics
from morag_worker.protocol import (
    MAX_REPORTED_MODELS,
    ChildReport,
    ReportedError,
    WorkerStatusReport,
)
from morag_worker.supervisor.book import IN_CHILD, Held, LeaseBook
from morag_worker.supervisor.devices import DeviceError, Nvml
from morag_worker.supervisor.disk import DiskGuard
from morag_worker.supervisor.pool import ChildPool, Slot
from morag_worker.supervisor.recent import RecentErrors
from morag_worker.supervisor.watchdog import Watchdog, process_tree

#: /health fails when the main loop has not ticked for this long (it ticks at least
#: every second).
LOOP_STALL_S = 30.0
#: WATCHDOG=1 is sent only while the server answered within this window.
SERVER_SILENCE_S = 120.0
#: Recent errors in a status report: the dashboard shows what just went wrong; /status
#: keeps the longer list.
REPORTED_ERRORS = 5


@dataclass
class RunState:
    """The main loop's own facts, refreshed by it every pass and read by the views."""

    worker_id: str
    worker_type: str
    started: float = field(default_factory=time.monotonic)
    last_tick: float = field(default_factory=time.monotonic)
    registered: bool = False
    draining: bool = False
    done: int = 0
    #: The server refuses the key (leasing gets 401/403).
    auth_failed: bool = False
    #: time.monotonic() of the server's last answer (lease or heartbeat).
    server_ok_at: float = 0.0
    #: Why leasing is paused by this worker's own infrastructure ("" = it is not).
    paused: str = ""
    task_types: list[str] = field(default_factory=list)
    lease_types: list[str] = field(default_factory=list)
    #: The server keeps status reports (its registration reply said so).
    status_reports: bool = False


class StatusViews:
    def __init__(
        self,
        run: RunState,
        pool: ChildPool,
        book: LeaseBook,
        watchdog: Watchdog,
        nvml: Nvml,
        disk: DiskGuard,
        errors: RecentErrors,
        metrics: SupervisorMetrics,
    ) -> None:
        self.run = run
        self.pool = pool
        self.book = book
        self.watchdog = watchdog
        self.nvml = nvml
        self.disk = disk
        self.errors = errors
        self.ready_sent = False
        self.last_status = ""
        self.last_watchdog = float("-inf")
        metrics.watch(self.metrics_snapshot)

    def active_tasks(self) -> int:
        return self.book.count(*IN_CHILD)

    def health(self) -> tuple[int, dict[str, Any]]:
        run = self.run
        stalled = time.monotonic() - run.last_tick > LOOP_STALL_S and run.registered
        body = {
            "status": "unhealthy" if stalled else "healthy",
            "worker_id": run.worker_id,
            "worker_type": run.worker_type,
            "uptime": round(time.monotonic() - run.started, 1),
            "active_tasks": self.active_tasks(),
            "version": __version__,
        }
        return (503 if stalled else 200), body

    def ready(self) -> tuple[int, dict[str, Any]]:
        run = self.run
        healthy = [s.name for s in self.pool.healthy()]
        reasons = []
        if not run.registered:
            reasons.append("not registered with the server")
        if not healthy:
            reasons.append("no healthy child")
        if run.draining:
            reasons.append("draining")
        if run.auth_failed:
            reasons.append("the server refuses the API key")
        if run.paused:
            reasons.append(f"not leasing: {run.paused}")
        return (503 if reasons else 200), {
            "ready": not reasons,
            "reasons": reasons,
            "healthy_children": healthy,
            "quarantined_gpus": {str(g): why for g, why in self.pool.bad_gpus.items()},
        }

    def status(self) -> dict[str, Any]:
        run = self.run
        tasks = [
            {
                "task_id": h.task_id,
                "task_type": h.spec.task_type,
                "stage": h.stage,
                "child": h.slot,
                "progress": h.progress,
                "attempt": h.spec.attempt,
            }
            for h in self.book.all()
        ]
        disk = self.disk.reading
        return {
            "worker_id": run.worker_id,
            "registered": run.registered,
            "draining": run.draining,
            "done": run.done,
            "leasing_paused": run.paused or None,
            "disk": {
                "work_dir": str(self.disk.work_root),
                "free_bytes": disk.free_bytes,
                "total_bytes": disk.total_bytes,
                "min_free_bytes": self.disk.min_free_bytes,
            },
            "children": [_child_view(s) for s in list(self.pool.slots.values())],
            "devices": self.devices(),
            "tasks": tasks,
            "task_types": list(run.task_types),
            "lease_types": list(run.lease_types),
            "recent_errors": self.errors.snapshot(),
        }

    def report(self) -> WorkerStatusReport:
        """The compact status report the heartbeats carry to the server (the dashboard's
        Workers page): each child with its device, cores, state, task, models, memory
        and crashes; draining, paused leasing, quarantined GPUs, the last errors."""
        run = self.run
        held = {h.slot: h for h in self.book.all() if h.slot is not None}
        errors = self.errors.snapshot()[-REPORTED_ERRORS:]
        return WorkerStatusReport(
            children=[_child_report(s, held.get(s.name)) for s in list(self.pool.slots.values())],
            draining=run.draining,
            leasing_paused=run.paused[:512] or None,
            quarantined_gpus={str(g): why[:512] for g, why in self.pool.bad_gpus.items()},
            tasks_done=run.done,
            uptime_s=round(time.monotonic() - run.started, 1),
            recent_errors=[
                ReportedError(at=e["at"], type=str(e["type"])[:64], message=str(e["message"])[:512])
                for e in errors
            ],
        )

    def devices(self) -> list[dict[str, Any]]:
        """Each GPU in use, read from NVML now, with whether it is quarantined."""
        found = []
        for gpu in self.watchdog.gpus:
            entry: dict[str, Any] = {
                "gpu": gpu,
                "quarantined": gpu in self.pool.bad_gpus,
                "reason": self.pool.bad_gpus.get(gpu),
            }
            try:
                memory = self.nvml.memory(gpu)
                entry.update(
                    memory_total_bytes=memory.total_bytes,
                    memory_used_bytes=memory.used_bytes,
                    utilization_ratio=self.nvml.utilization_ratio(gpu),
                )
            except DeviceError as exc:
                entry["error"] = str(exc)
            found.append(entry)
        return found

    def metrics_snapshot(self) -> dict[str, Any]:
        rss = {}
        for slot in list(self.pool.slots.values()):
            process = slot.process
            if process is not None and process.pid:
                rss[slot.name] = process_tree(process.pid)[0]
        gpus = {str(d["gpu"]): d for d in self.devices()}
        return {
            "in_flight": len(self.book),
            "capacity": self.pool.capacity(),
            "child_rss": rss,
            "gpus": gpus,
            "disk_free_bytes": self.disk.reading.free_bytes,
            "leasing_paused": 1 if self.run.paused else 0,
        }

    def server_answers(self) -> bool:
        """Ticking and the server answered recently: what WATCHDOG=1 vouches for."""
        return time.monotonic() - self.run.server_ok_at < SERVER_SILENCE_S

    def notify_systemd(self) -> None:
        if not self.ready_sent and self.pool.healthy():
            sdnotify.ready("children warm")
            self.ready_sent = True
            serving = [s.name for s in self.pool.healthy()]
            logger.info(
                "ready: {} of {} children serving ({}); leasing {}",
                len(serving),
                len(self.pool.slots),
                ", ".join(serving),
                ",".join(self.run.lease_types) or "nothing yet",
            )
        interval = sdnotify.watchdog_interval_s()
        now = time.monotonic()
        if (
            self.ready_sent
            and interval is not None
            and now - self.last_watchdog >= interval
            and self.server_answers()
        ):
            sdnotify.watchdog()
            self.last_watchdog = now
        text = f"busy {self.active_tasks()}/{self.pool.capacity()}, done {self.run.done}"
        if self.run.paused:
            text = f"not leasing ({self.run.paused}): {text}"
        if self.run.draining:
            text = f"draining: {text}"
        if text != self.last_status:
            sdnotify.status(text)
            self.last_status = text


def _child_view(s: Slot) -> dict[str, Any]:
    """One child in ``/status``: its state, task, memory, models and recycling."""
    return {
        "name": s.name,
        "pool": s.pool,
        "gpu": s.gpu,
        "state": s.state,
        "pid": s.process.pid if s.process is not None else None,
        "task_id": s.task_id,
        "tasks_done": s.tasks_done,
        "models": s.models,
        "cache_bytes": s.cache_bytes,
        "restarts": s.restarts,
        "crashes": len(s.crashes),
        "quarantine": s.quarantine_reason or None,
        "quarantines": s.quarantines,
        "recycle": s.recycle,
        "rss_bytes": s.rss_bytes,
        "gpu_memory_bytes": s.gpu_bytes,
        "tasks_until_recycle": max(0, s.task_limit - s.tasks_done) if s.task_limit else None,
    }


def _child_report(s: Slot, held: Held | None) -> ChildReport:
    """One child in a status report, cut to the report's bounds."""
    return ChildReport(
        name=s.name[:32],
        pool=s.pool,
        gpu=s.gpu,
        cores=sorted(s.spec.cpus),
        state=s.state,
        task_id=s.task_id,
        task_type=held.spec.task_type[:64] if held else None,
        stage=(held.child_stage or held.stage)[:64] if held else None,
        progress=held.progress if held else None,
        models=[m[:200] for m in s.models[:MAX_REPORTED_MODELS]],
        cache_bytes=s.cache_bytes,
        rss_bytes=s.rss_bytes,
        gpu_memory_bytes=s.gpu_bytes,
        tasks_done=s.tasks_done,
        restarts=s.restarts,
        crashes=len(s.crashes),
        quarantine=s.quarantine_reason[:512] or None,
    )
