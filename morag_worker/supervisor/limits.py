"""The supervisor's per-child task limit (``--max-tasks-per-child``), jittered per child.

Memory limits and sizes are parsed in :mod:`morag_worker.sizes`.
"""

from __future__ import annotations

import random

#: ``--max-tasks-per-child`` varies by up to this share per child, so children started
#: together do not all recycle together.
MAX_TASKS_JITTER = 0.1


def task_limit(max_tasks: int, rng: random.Random | None = None) -> int:
    """Tasks one child runs before it is replaced: ``max_tasks`` ± the jitter, at least 1;
    0 (no limit) stays 0."""
    if max_tasks <= 0:
        return 0
    spread = (rng or random).uniform(-MAX_TASKS_JITTER, MAX_TASKS_JITTER)
    return max(1, round(max_tasks * (1 + spread)))
