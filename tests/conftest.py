"""Test-suite wide setup: shared helpers importable from every test directory, and an
offline environment (no model or telemetry downloads) for every process the tests start."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_THREAD_LIMIT", "1")

from harness import cluster, cluster_factory  # noqa: F401  (fixtures for all tests)


def pytest_collection_modifyitems(items: list) -> None:
    """Browser tests run last: pytest-playwright's sync API keeps an event loop marked as
    running on the main thread until the session ends, and ``asyncio.run`` in any later
    test would refuse to start under it."""
    items.sort(key=lambda item: "tests/browser/" in str(item.path).replace(os.sep, "/"))
