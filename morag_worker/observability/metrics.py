"""The supervisor's metrics. It owns the only registry; children send events.

Counters and histograms are updated by the main loop as events arrive. Gauges (in
flight, capacity, child memory, GPU memory, cache contents) are computed at scrape time
by :class:`StateCollector` from a snapshot function, so they are never stale.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from morag_worker import __version__

#: The fixed label set of ``morag_worker_child_restarts_total{reason}``; planned:
#: max_tasks, reload, exit; ``cancel``: a cancelled task that did not stop was killed;
#: ``killed``: an idle child ended by a signal the supervisor did not send. (The
#: supervisor's lifecycle module assigns them.)
RESTART_REASONS = (
    "crash",
    "killed",
    "memory",
    "timeout",
    "cancel",
    "max_tasks",
    "reload",
    "unresponsive",
    "cuda_oom",
    "cuda_fatal",
    "boot",
    "exit",
)

_DURATION_BUCKETS = (0.005, 0.025, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600)


class SupervisorMetrics:
    def __init__(self, worker_id: str) -> None:
        r = self.registry = CollectorRegistry()
        self.tasks = Counter(
            "morag_worker_tasks",
            "Tasks finished, by outcome.",
            ["task_type", "outcome"],
            registry=r,
        )
        self.duration = Histogram(
            "morag_worker_task_duration_seconds",
            "Time per task stage.",
            ["task_type", "stage"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.restarts = Counter(
            "morag_worker_child_restarts", "Child restarts, by reason.", ["reason"], registry=r
        )
        for reason in RESTART_REASONS:  # every reason is exported from the start, at 0
            self.restarts.labels(reason)
        self.requests = Counter(
            "morag_worker_server_requests",
            "Calls to the server, by endpoint and HTTP status.",
            ["endpoint", "code"],
            registry=r,
        )
        self.lease_lost = Counter("morag_worker_lease_lost", "Leases lost while held.", registry=r)
        self.cache_hits = Counter("morag_worker_model_cache_hits", "Model cache hits.", registry=r)
        self.cache_misses = Counter(
            "morag_worker_model_cache_misses", "Model cache misses.", registry=r
        )
        self.model_load = Counter(
            "morag_worker_model_load_seconds", "Seconds spent loading models.", registry=r
        )
        self.infra_failures = Counter(
            "morag_worker_infrastructure_failures",
            "Tasks given back because this worker's disk or file handles failed.",
            registry=r,
        )
        self.last_lease = Gauge(
            "morag_worker_last_lease_success_timestamp_seconds",
            "Unix time of the last successful lease call.",
            registry=r,
        )
        self.info = Gauge(
            "morag_worker_info", "Build and identity.", ["version", "worker_id"], registry=r
        )
        self._worker_id = worker_id
        self.info.labels(__version__, worker_id).set(1)

    def identify(self, worker_id: str) -> None:
        """The worker id the server registered (it may differ from the configured one)."""
        if worker_id != self._worker_id:
            self.info.remove(__version__, self._worker_id)
            self._worker_id = worker_id
            self.info.labels(__version__, worker_id).set(1)

    def request(self, endpoint: str, code: int | str) -> None:
        self.requests.labels(endpoint, str(code)).inc()

    def watch(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.registry.register(StateCollector(snapshot))


class StateCollector(Collector):
    """Gauges read from the supervisor's state at scrape time."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[GaugeMetricFamily]:
        s = self.snapshot()
        yield GaugeMetricFamily(
            "morag_worker_tasks_in_flight", "Tasks held (leased).", value=s["in_flight"]
        )
        yield GaugeMetricFamily(
            "morag_worker_capacity", "Children able to take tasks.", value=s["capacity"]
        )
        rss = GaugeMetricFamily(
            "morag_worker_child_memory_rss_bytes",
            "Resident memory of each child and its subprocesses.",
            labels=["child"],
        )
        for child, value in s.get("child_rss", {}).items():
            rss.add_metric([child], value)
        yield rss
        gpu_mem = GaugeMetricFamily(
            "morag_worker_gpu_memory_used_bytes", "GPU memory in use.", labels=["gpu"]
        )
        gpu_util = GaugeMetricFamily(
            "morag_worker_gpu_utilization_ratio", "GPU utilisation (0-1).", labels=["gpu"]
        )
        quarantined = GaugeMetricFamily(
            "morag_worker_gpu_quarantined", "1 if the GPU is quarantined.", labels=["gpu"]
        )
        for gpu, info in s.get("gpus", {}).items():
            gpu_mem.add_metric([gpu], info.get("memory_used_bytes", 0))
            gpu_util.add_metric([gpu], info.get("utilization_ratio", 0))
            quarantined.add_metric([gpu], 1 if info.get("quarantined") else 0)
        yield gpu_mem
        yield gpu_util
        yield quarantined
        if "disk_free_bytes" in s:
            yield GaugeMetricFamily(
                "morag_worker_disk_free_bytes",
                "Free bytes on the work dir's file system.",
                value=s["disk_free_bytes"],
            )
            yield GaugeMetricFamily(
                "morag_worker_leasing_paused",
                "1 while this worker does not lease because of its own infrastructure.",
                value=s["leasing_paused"],
            )
