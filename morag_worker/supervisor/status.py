"""What the supervisor tells the outside: health, readiness, status, metrics, systemd.

All views are snapshots read from other threads (the HTTP thread, a Prometheus scrape);
they copy what they need and never change supervisor state.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import psutil
from loguru import logger

from morag_worker.observability import sdnotify
from morag_worker.observability.health import HealthServer

if TYPE_CHECKING:
    from morag_worker.supervisor.supervisor import Supervisor

#: /health fails when the main loop has not ticked for this long (it ticks every 0.2 s).
LOOP_STALL_S = 30.0
#: WATCHDOG=1 is sent only while the server answered within this window.
SERVER_SILENCE_S = 120.0


class StatusViews:
    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup
        self.http: HealthServer | None = None
        self.ready_sent = False
        self.last_status = ""
        sup.metrics.watch(self.metrics_snapshot)

    def start_http(self) -> None:
        cfg = self.sup.config
        try:
            self.http = HealthServer(
                cfg.health_host,
                cfg.health_port,
                self.sup.metrics.registry,
                self.health,
                self.ready,
                self.status,
            )
        except OSError as exc:
            logger.error(
                "health endpoint not started on {}:{}: {}", cfg.health_host, cfg.health_port, exc
            )
            return
        self.http.start()
        logger.info("health endpoint on http://{}:{}/health", cfg.health_host, self.http.port)

    def stop_http(self) -> None:
        if self.http is not None:
            self.http.stop()
            self.http = None

    def active_tasks(self) -> int:
        return sum(1 for h in self.sup.book.all() if h.stage in ("dispatched", "running"))

    def health(self) -> tuple[int, dict[str, Any]]:
        sup = self.sup
        stalled = time.monotonic() - sup.last_tick > LOOP_STALL_S and sup.registered
        body = {
            "status": "unhealthy" if stalled else "healthy",
            "worker_id": sup.config.worker_id,
            "worker_type": sup.config.worker_type,
            "uptime": round(time.monotonic() - sup.started, 1),
            "active_tasks": self.active_tasks(),
            "version": _version(),
        }
        return (503 if stalled else 200), body

    def ready(self) -> tuple[int, dict[str, Any]]:
        sup = self.sup
        healthy = [s.name for s in sup.pool.slots.values() if s.state in ("idle", "busy")]
        reasons = []
        if not sup.registered:
            reasons.append("not registered with the server")
        if not healthy:
            reasons.append("no healthy child")
        if sup.draining:
            reasons.append("draining")
        if sup.leaser is not None and sup.leaser.auth_failed:
            reasons.append("the server refuses the API key")
        return (503 if reasons else 200), {
            "ready": not reasons,
            "reasons": reasons,
            "healthy_children": healthy,
        }

    def status(self) -> dict[str, Any]:
        sup = self.sup
        children = [
            {
                "name": s.name,
                "pool": s.pool,
                "gpu": s.gpu,
                "state": s.state,
                "pid": s.process.pid if s.process is not None else None,
                "task_id": s.task_id,
                "tasks_done": s.tasks_done,
                "models": s.models,
                "restarts": s.restarts,
                "recycle": s.recycle,
            }
            for s in sup.pool.slots.values()
        ]
        tasks = [
            {
                "task_id": h.task_id,
                "task_type": h.spec.task_type,
                "stage": h.stage,
                "child": h.slot,
                "progress": h.progress,
                "attempt": h.spec.attempt,
            }
            for h in sup.book.all()
        ]
        return {
            "worker_id": sup.config.worker_id,
            "registered": sup.registered,
            "draining": sup.draining,
            "done": sup.done,
            "children": children,
            "tasks": tasks,
            "task_types": sup.task_types(),
            "recent_errors": list(sup.recent_errors),
        }

    def metrics_snapshot(self) -> dict[str, Any]:
        sup = self.sup
        rss = {}
        for slot in list(sup.pool.slots.values()):
            process = slot.process
            if process is not None and process.pid:
                rss[slot.name] = _tree_rss(process.pid)
        return {"in_flight": len(sup.book), "capacity": sup.pool.capacity(), "child_rss": rss}

    def notify_systemd(self) -> None:
        sup = self.sup
        if not self.ready_sent and any(
            s.state in ("idle", "busy") for s in sup.pool.slots.values()
        ):
            sdnotify.ready("children warm")
            self.ready_sent = True
        if sup.heartbeater is not None and sup.leaser is not None:
            last_ok = max(
                sup.heartbeater.last_ok, time.monotonic() - (time.time() - sup.leaser.last_success)
            )
            if time.monotonic() - last_ok < SERVER_SILENCE_S:
                sdnotify.watchdog()
        text = f"busy {self.active_tasks()}/{sup.pool.capacity()}, done {sup.done}"
        if text != self.last_status:
            sdnotify.status(text)
            self.last_status = text


def _tree_rss(pid: int) -> int:
    """Resident memory of a process and all its descendants, in bytes."""
    try:
        proc = psutil.Process(pid)
        total = proc.memory_info().rss
        for child in proc.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                continue
        return int(total)
    except psutil.Error:
        return 0


def _version() -> str:
    from morag_worker import __version__

    return __version__
