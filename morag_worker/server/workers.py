"""Workers as users and admins see them: who is online, and which types they serve.

An admin sees every worker; a user sees the workers that may run its tasks (those
registered with its own worker keys, and pool workers). A worker is online while it
called (lease, heartbeat, register) within the metrics' online window.
"""

from __future__ import annotations

import json
import time

from morag_worker.protocol import DeviceInfo, WorkerInfo, canonical_task_type
from morag_worker.server.db import Database
from morag_worker.server.metrics import ONLINE_WINDOW_S
from morag_worker.server.queue import Caller


def visible_workers(db: Database, caller: Caller) -> list[WorkerInfo]:
    since = time.time() - ONLINE_WINDOW_S
    rows = db.query("list_workers", all_users=caller.role == "admin", user_id=caller.user_id)
    return [
        WorkerInfo(
            worker_id=row["worker_id"],
            host=row["host"],
            worker_type=row["worker_type"],
            task_types=json.loads(row["task_types"]),
            capacity=row["capacity"],
            running=row["running"],
            devices=[DeviceInfo.model_validate(d) for d in json.loads(row["devices"])],
            version=row["version"],
            user_id=row["user_id"],
            pool=bool(row["pool"]),
            registered_at=row["registered_at"],
            last_seen_at=row["last_seen_at"],
            online=row["last_seen_at"] >= since,
        )
        for row in rows
    ]


def serving(workers: list[WorkerInfo], task_types: tuple[str, ...]) -> dict[str, tuple[int, int]]:
    """(online workers, their capacity) per task type. A worker that registered no types
    leases every type, as the lease route does."""
    counts = {t: (0, 0) for t in task_types}
    for worker in workers:
        if not worker.online:
            continue
        types = {canonical_task_type(t) for t in worker.task_types} or set(task_types)
        for task_type in types & set(task_types):
            n, capacity = counts[task_type]
            counts[task_type] = (n + 1, capacity + worker.capacity)
    return counts
