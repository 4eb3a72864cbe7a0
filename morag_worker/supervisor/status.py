"""What the supervisor tells the outside: health, readiness, status, metrics, systemd.

All views are snapshots read from other threads (the HTTP thread, a Prometheus scrape);
they copy what they need and never change supervisor state.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from loguru import logger

from morag_worker.observability import sdnotify
from morag_worker.observability.health import HealthServer
from morag_worker.supervisor.devices import DeviceError
from morag_worker.supervisor.watchdog import process_tree

if TYPE_CHECKING:
    from morag_worker.supervisor.pool import Slot
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
        self.last_watchdog = float("-inf")
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
        healthy = [s.name for s in sup.pool.healthy()]
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
            "quarantined_gpus": {str(g): why for g, why in sup.pool.bad_gpus.items()},
        }

    def status(self) -> dict[str, Any]:
        sup = self.sup
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
            "children": [_child_view(s) for s in list(sup.pool.slots.values())],
            "devices": self.devices(),
            "tasks": tasks,
            "task_types": sup.task_types(),
            "lease_types": sup.lease_types(),
            "recent_errors": list(sup.recent_errors),
        }

    def devices(self) -> list[dict[str, Any]]:
        """Each GPU in use, read from NVML now, with whether it is quarantined."""
        sup = self.sup
        found = []
        for gpu in sup.watchdog.gpus:
            entry: dict[str, Any] = {
                "gpu": gpu,
                "quarantined": gpu in sup.pool.bad_gpus,
                "reason": sup.pool.bad_gpus.get(gpu),
            }
            try:
                memory = sup.nvml.memory(gpu)
                entry.update(
                    memory_total_bytes=memory.total_bytes,
                    memory_used_bytes=memory.used_bytes,
                    utilization_ratio=sup.nvml.utilization_ratio(gpu),
                )
            except DeviceError as exc:
                entry["error"] = str(exc)
            found.append(entry)
        return found

    def metrics_snapshot(self) -> dict[str, Any]:
        sup = self.sup
        rss = {}
        for slot in list(sup.pool.slots.values()):
            process = slot.process
            if process is not None and process.pid:
                rss[slot.name] = process_tree(process.pid)[0]
        gpus = {str(d["gpu"]): d for d in self.devices()}
        return {
            "in_flight": len(sup.book),
            "capacity": sup.pool.capacity(),
            "child_rss": rss,
            "gpus": gpus,
        }

    def healthy(self) -> bool:
        """Ticking and the server answered recently: what WATCHDOG=1 vouches for."""
        sup = self.sup
        if sup.heartbeater is None or sup.leaser is None:
            return False
        last_ok = max(
            sup.heartbeater.last_ok, time.monotonic() - (time.time() - sup.leaser.last_success)
        )
        return time.monotonic() - last_ok < SERVER_SILENCE_S

    def notify_systemd(self) -> None:
        sup = self.sup
        if not self.ready_sent and sup.pool.healthy():
            sdnotify.ready("children warm")
            self.ready_sent = True
        interval = sdnotify.watchdog_interval_s()
        now = time.monotonic()
        if (
            self.ready_sent
            and interval is not None
            and now - self.last_watchdog >= interval
            and self.healthy()
        ):
            sdnotify.watchdog()
            self.last_watchdog = now
        text = f"busy {self.active_tasks()}/{sup.pool.capacity()}, done {sup.done}"
        if sup.draining:
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
        "recycle": s.recycle,
        "rss_bytes": s.rss_bytes,
        "gpu_memory_bytes": s.gpu_bytes,
        "tasks_until_recycle": max(0, s.task_limit - s.tasks_done) if s.task_limit else None,
    }


def _version() -> str:
    from morag_worker import __version__

    return __version__
