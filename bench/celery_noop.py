"""The Celery baseline for bench/dispatch.py: a no-op task on the local Redis."""

from __future__ import annotations

import os
import time

from celery import Celery

REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")
app = Celery("celery_noop", broker=f"{REDIS}/14", backend=f"{REDIS}/15")
# Celery's defaults (prefetch multiplier 4: 8 reserved tasks for 2 processes), the setup
# it is usually run with; morag-worker gets the matching --prefetch 8 in dispatch.py.
app.conf.update(
    result_expires=600, broker_connection_retry_on_startup=True, worker_hijack_root_logger=False
)


@app.task(name="noop")
def noop() -> float:
    """Returns when it started (wall clock), to measure pickup latency."""
    return time.time()
