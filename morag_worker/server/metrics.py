"""Server metrics: queue depth by type and state, workers online, lease wait.

Gauges are computed at scrape time by a collector that reads the database, so they are
never stale and cost nothing between scrapes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
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
    def __init__(self, db: Any, task_types: tuple[str, ...]) -> None:
        self.db = db
        self.task_types = task_types

    def collect(self) -> Iterator[GaugeMetricFamily]:
        tasks = GaugeMetricFamily(
            "morag_server_tasks", "Tasks by type and state.", labels=["task_type", "state"]
        )
        counts = {(r["task_type"], r["state"]): r["n"] for r in self.db.query("queue_counts")}
        for task_type in self.task_types:
            for state in TaskState:
                tasks.add_metric([task_type, state.value], counts.get((task_type, state.value), 0))
        yield tasks
        online = self.db.one("workers_online", since=time.time() - ONLINE_WINDOW_S) or {"n": 0}
        index = self.db.one("index_counts") or {"pending": 0, "failed": 0}
        rows = GaugeMetricFamily(
            "morag_server_index_rows",
            "Completed results by search-indexing state: pending (waiting or retrying) "
            "or failed (given up; an admin retries them).",
            labels=["state"],
        )
        for name in ("pending", "failed"):
            rows.add_metric([name], index[name] or 0)
        yield rows
        yield GaugeMetricFamily(
            "morag_server_workers_online",
            "Workers seen within the last 90 seconds.",
            value=online["n"],
        )
