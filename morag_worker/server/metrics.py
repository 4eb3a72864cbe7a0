"""Server metrics: queue depth by type and state, workers online, lease wait.

Gauges are computed at scrape time by a collector that reads the database, so they are
never stale and cost nothing between scrapes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from morag_worker.protocol import TaskState

REGISTRY = CollectorRegistry()
LEASE_WAIT = Histogram(
    "morag_server_lease_wait_seconds",
    "How long lease requests waited before returning (long-poll).",
    buckets=(0.001, 0.005, 0.02, 0.1, 0.5, 2, 5, 15, 30, 60),
    registry=REGISTRY,
)
LONG_POLLS_WAITING = Gauge(
    "morag_server_long_polls_waiting",
    "Lease long-polls waiting for a task now, all keys together (this process).",
    registry=REGISTRY,
)
FILES_RECLAIMED = Counter(
    "morag_server_files_reclaimed",
    "Stored files and partial uploads removed by the sweep (no task refers to them).",
    registry=REGISTRY,
)
FILES_RECLAIMED_BYTES = Counter(
    "morag_server_files_reclaimed_bytes",
    "Bytes freed by the file sweep.",
    registry=REGISTRY,
)
INDEX_FAILURES = Counter(
    "morag_server_index_failures",
    "Attempts to index a completed result that failed (the store itself being down "
    "is not counted).",
    registry=REGISTRY,
)
#: A worker counts as online if it called within this window (heartbeats come every
#: third of a lease, long-polls at most every 30 s).
ONLINE_WINDOW_S = 90.0


class QueueCollector(Collector):
    """Queue depth and workers online, read at scrape time from the queue and the
    worker registry."""

    def __init__(
        self,
        counts: Callable[[], dict[tuple[str, str], int]],
        online: Callable[[float], int],
        task_types: tuple[str, ...],
    ) -> None:
        self.counts = counts
        self.online = online
        self.task_types = task_types

    def collect(self) -> Iterator[GaugeMetricFamily]:
        tasks = GaugeMetricFamily(
            "morag_server_tasks", "Tasks by type and state.", labels=["task_type", "state"]
        )
        counts = self.counts()
        for task_type in self.task_types:
            for state in TaskState:
                tasks.add_metric([task_type, state.value], counts.get((task_type, state.value), 0))
        yield tasks
        yield GaugeMetricFamily(
            "morag_server_workers_online",
            "Workers seen within the last 90 seconds.",
            value=self.online(time.time() - ONLINE_WINDOW_S),
        )


class IndexCollector(Collector):
    """Completed results waiting for indexing or given up on, read at scrape time."""

    def __init__(self, counts: Callable[[], dict[str, int]]) -> None:
        self.counts = counts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        rows = GaugeMetricFamily(
            "morag_server_index_rows",
            "Completed results by search-indexing state: pending (waiting or retrying) "
            "or failed (given up; an admin retries them).",
            labels=["state"],
        )
        counts = self.counts()
        for name in ("pending", "failed"):
            rows.add_metric([name], counts.get(name, 0))
        yield rows
