"""The worker registry: who serves which types, and which supervisor owns a worker id.

A worker id (``gpu-host-3-gpu``) names a place in the fleet; an *instance* is one run of
a supervisor in that place, issued a random id at registration and sent back on every
later call (``X-Morag-Worker-Instance``). Leases belong to the instance that claimed
them, so one supervisor stopping never releases another's tasks, even under the same id.

A worker id belongs to the key that registered it while its instance is live (it called
within :meth:`WorkerRegistry.live_window_s`): another key gets 409 ``worker_id_taken``,
and a second supervisor with the same key gets 409 ``worker_id_in_use`` with the live
instance's host and pid. A supervisor that restarts after a crash recognises its dead
predecessor by that host and pid and takes the id over (``replaces_instance``); the
predecessor's leases then expire at once and return to the queue.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from morag_worker.protocol import (
    DeviceInfo,
    RegisterRequest,
    WorkerInfo,
    WorkerStatusReport,
    canonical_task_type,
)
from morag_worker.server.auth import Caller
from morag_worker.server.db import Database
from morag_worker.server.metrics import ONLINE_WINDOW_S

#: "Last seen" precision; far below the live window and the 90 s online window.
TOUCH_INTERVAL_S = 5.0
#: Header carrying the instance id on every call after registration.
INSTANCE_HEADER = "X-Morag-Worker-Instance"


class WorkerIdConflict(Exception):
    """The worker id is held by a live instance (409); ``details`` say which."""

    def __init__(self, code: str, message: str, details: dict[str, Any]) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


@dataclass
class WorkerRegistry:
    db: Database
    #: How long an instance counts as live after its last call: a supervisor calls at
    #: least once per long-poll (``max_wait_s``) and heartbeats every third of a lease.
    live_window_s: float
    _touched: dict[str, float] = field(default_factory=dict)
    #: Task types each worker registered, so that a lease does not read them back.
    _types: dict[str, list[str]] = field(default_factory=dict)

    def register(self, who: Caller, body: RegisterRequest, legacy: bool = False) -> str:
        """Record the worker; returns the new instance id or raises WorkerIdConflict.

        ``legacy``: a worker of release 0.1.0, which knows no conflicts and no instances:
        it re-registers as it always did (its restart would otherwise be refused)."""
        now = time.time()
        with self.db.transaction():
            row = self.db.one("get_worker", worker_id=body.worker_id)
            live = row is not None and self._live(row, now, body.replaces_instance)
            if live and not (legacy and row is not None and row["key_id"] == who.key_id):
                assert row is not None
                raise self._conflict(who, row, now)
            instance_id = "wi_" + secrets.token_hex(8)
            if (
                row is not None
                and row["instance_id"]
                and row["instance_id"] == (body.replaces_instance)
            ):
                # The caller found its predecessor dead: its leases need not wait out
                # their time, the reaper returns them to the queue on its next pass.
                self.db.execute("expire_instance_leases", instance_id=row["instance_id"], now=now)
            self.db.execute(
                "upsert_worker",
                worker_id=body.worker_id,
                key_id=who.key_id,
                user_id=who.user_id,
                host=body.host,
                worker_type=body.worker_type,
                task_types=json.dumps(body.task_types),
                capacity=body.capacity,
                devices=json.dumps([d.model_dump() for d in body.devices]),
                version=body.version,
                protocol_version=body.protocol_version,
                instance_id=instance_id,
                pid=body.pid,
                now=now,
            )
        self._types[body.worker_id] = [canonical_task_type(t) for t in body.task_types]
        self._touched[body.worker_id] = now
        return instance_id

    def _live(self, row: dict[str, Any], now: float, replaces: str) -> bool:
        if not row["instance_id"] or row["instance_id"] == replaces:
            return False  # a release-0.1.0 row, or the caller's own dead predecessor
        return bool(now - row["last_seen_at"] < self.live_window_s)

    def _conflict(self, who: Caller, row: dict[str, Any], now: float) -> WorkerIdConflict:
        seen = now - row["last_seen_at"]
        details = {
            "instance_id": row["instance_id"],
            "host": row["host"],
            "pid": row["pid"],
            "seen_s_ago": round(seen, 1),
        }
        if row["key_id"] != who.key_id:
            return WorkerIdConflict(
                "worker_id_taken",
                f"worker id {row['worker_id']!r} is registered by another key, and its "
                f"supervisor on {row['host']!r} called {seen:.0f} s ago: choose another "
                "--worker-id",
                details,
            )
        return WorkerIdConflict(
            "worker_id_in_use",
            f"worker id {row['worker_id']!r} is in use by a live supervisor on "
            f"{row['host']!r} (pid {row['pid']}, seen {seen:.0f} s ago): give each "
            "supervisor its own --worker-id",
            details,
        )

    def unregister(self, who: Caller, worker_id: str, instance_id: str) -> None:
        """Forget the worker row if it is this instance's (or, without an instance, this
        key's: the seed's clients and release 0.1.0 send none)."""
        self.db.execute(
            "delete_worker", worker_id=worker_id, key_id=who.key_id, instance_id=instance_id
        )
        self._types.pop(worker_id, None)

    def touch(self, worker_id: str) -> None:
        """Record that a worker called; written at most every few seconds per worker so
        that leasing stays off the database's write path."""
        now = time.time()
        if now - self._touched.get(worker_id, 0.0) >= TOUCH_INTERVAL_S:
            self._touched[worker_id] = now
            self.db.execute("touch_worker", worker_id=worker_id, now=now)

    def store_status(
        self, who: Caller, worker_id: str, instance_id: str, report: WorkerStatusReport
    ) -> None:
        """Keep the worker's latest status report (its instance's, or without an
        instance its key's; a report for a worker id held by another is dropped)."""
        self.db.execute(
            "store_worker_status",
            status=report.model_dump_json(),
            now=time.time(),
            worker_id=worker_id,
            key_id=who.key_id,
            instance_id=instance_id,
        )

    def task_types(self, worker_id: str) -> list[str]:
        """The types the worker registered (empty when unknown)."""
        registered = self._types.get(worker_id)
        if registered is None:
            row = self.db.one("get_worker", worker_id=worker_id)
            registered = (
                [canonical_task_type(t) for t in json.loads(row["task_types"])] if row else []
            )
            self._types[worker_id] = registered
        return registered

    def online_count(self, since: float) -> int:
        """Workers that called since ``since`` (Unix time)."""
        row = self.db.one("workers_online", since=since)
        return int(row["n"]) if row else 0

    def visible(self, caller: Caller) -> list[WorkerInfo]:
        """Workers as a caller may see them: an admin every one; a user those that may
        run its tasks (registered with its own worker keys, and pool workers)."""
        since = time.time() - ONLINE_WINDOW_S
        rows = self.db.query(
            "list_workers", all_users=caller.role == "admin", user_id=caller.user_id
        )
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
                protocol_version=row["protocol_version"],
                instance_id=row["instance_id"] if caller.role == "admin" else "",
                user_id=row["user_id"],
                pool=bool(row["pool"]),
                registered_at=row["registered_at"],
                last_seen_at=row["last_seen_at"],
                online=row["last_seen_at"] >= since,
                status=WorkerStatusReport.model_validate_json(row["status"])
                if row["status"]
                else None,
                status_at=row["status_at"],
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
