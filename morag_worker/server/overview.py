"""The dashboard's overview and its views of one result, read from the database.

Everything here is computed when asked, from indexed queries: the queue's depth by type
and state, how many tasks ended per minute over the last hour (from ``finished_at``,
served by its index), the oldest queued task and the workers. A user sees only its own
tasks, as in the API; an admin sees everyone's.
"""

from __future__ import annotations

import json
import time
from typing import Any

from morag_worker.server.auth import Caller
from morag_worker.server.db import Database
from morag_worker.server.queue import NotFound
from morag_worker.server.ui_models import OldestQueued, Overview, QueueCount, Throughput
from morag_worker.server.workers import WorkerRegistry

#: The chart's window and resolution: the last hour in one-minute bars, the span an
#: operator looks back over when something just went wrong.
WINDOW_S = 3600.0
BUCKET_S = 60.0
#: Per-item fields left out of the result views: embeddings (hundreds of floats each)
#: and word timings are for programs, not for reading.
HIDDEN_ITEM_FIELDS = frozenset({"embedding", "words"})


def overview(db: Database, workers: WorkerRegistry, caller: Caller) -> Overview:
    now = time.time()
    # An admin sees everyone's tasks; a user its own, through the "_of_user" queries.
    of_user, scope = (
        ("", {}) if caller.role == "admin" else ("_of_user", {"user_id": caller.user_id})
    )
    counts = [QueueCount(**row) for row in db.query("ui_queue_counts" + of_user, **scope)]
    oldest = db.one("ui_oldest_queued" + of_user, **scope)
    return Overview(
        generated_at=now,
        all_users=caller.role == "admin",
        counts=counts,
        throughput=throughput(db, of_user, scope, now),
        oldest_queued=OldestQueued(**oldest) if oldest else None,
        workers=workers.visible(caller),
    )


def throughput(db: Database, of_user: str, scope: dict[str, Any], now: float) -> Throughput:
    buckets = int(WINDOW_S // BUCKET_S)
    # Bars end at the next whole bucket, so a bar is a clock minute and stays put.
    until = (now // BUCKET_S + 1) * BUCKET_S
    since = until - buckets * BUCKET_S
    series: dict[str, list[int]] = {"completed": [0] * buckets, "failed": [0] * buckets}
    rows = db.query(
        "ui_finished_per_bucket" + of_user, since=since, until=until, bucket_s=BUCKET_S, **scope
    )
    for row in rows:
        if 0 <= row["bucket"] < buckets:
            series[row["outcome"]][row["bucket"]] += row["n"]
    return Throughput(since=since, bucket_s=BUCKET_S, **series)


def stored_result(db: Database, task_id: str, caller: Caller) -> dict[str, Any]:
    """The task's stored result (NotFound unless the caller may see the task; LookupError
    while it has none)."""
    row = db.one("get_task", task_id=task_id)
    if row is None or not (caller.role == "admin" or row["user_id"] == caller.user_id):
        raise NotFound(f"task {task_id} not found")
    if not row["result"]:
        raise LookupError(f"task {task_id} has no result: it is {row['state']}")
    result: dict[str, Any] = json.loads(row["result"])
    return result


def result_items(
    result: dict[str, Any], kind: str, offset: int, limit: int
) -> tuple[int, list[dict[str, Any]]]:
    """(total, one slice) of the result's chunks or segments, without hidden fields."""
    items = result.get(kind) or []
    page = items[offset : offset + limit]
    return len(items), [
        {k: v for k, v in item.items() if k not in HIDDEN_ITEM_FIELDS} for item in page
    ]
