"""The ``noop`` diagnostic task: proves the whole path (lease → child → result) works.

Operators submit it to check a worker host end to end without loading any model
(``morag submit --type noop``); the dispatch benchmark measures protocol overhead with
it. ``sleep_s`` (0–3600) holds the task in its child, for checking drain and cancellation.
"""

from __future__ import annotations

import time

from morag_worker.errors import BadInput, Cancelled
from morag_worker.processors.base import TaskContext
from morag_worker.protocol import TaskResult

MAX_SLEEP_S = 3600.0


class NoopProcessor:
    task_type = "noop"

    def process(self, ctx: TaskContext) -> TaskResult:
        started_at = time.time()  # wall clock, comparable with the submitter's (pickup latency)
        raw = ctx.parameters.get("sleep_s", 0)
        try:
            sleep_s = float(raw)
        except (TypeError, ValueError):
            raise BadInput(f"parameter sleep_s must be a number of seconds, got {raw!r}") from None
        if not 0 <= sleep_s <= MAX_SLEEP_S:
            raise BadInput(
                f"parameter sleep_s must be between 0 and {MAX_SLEEP_S:g}, got {sleep_s:g}"
            )
        deadline = time.monotonic() + sleep_s
        while (left := deadline - time.monotonic()) > 0:
            if ctx.cancelled():
                raise Cancelled()
            time.sleep(min(left, 0.05))
        echo = str(ctx.parameters.get("echo", "ok"))
        metadata = {"slept_s": sleep_s, "inputs": ctx.input_names, "started_at": started_at}
        return TaskResult(content=echo, metadata=metadata)
