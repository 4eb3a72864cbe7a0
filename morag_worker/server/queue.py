"""The leased task queue: submit, claim, renew, complete, fail, release, cancel, retry.

At-least-once delivery with fencing. Every lease carries a fresh random token and every
update after a claim is conditioned on it: an unexpected zero-row update means the
caller no longer holds the lease (:class:`LeaseLost`, a 409 on the wire), never silence.
A repeated identical result is recognised by its hash and accepted as a no-op.
Every lease is recorded in the attempts history (:mod:`.attempts`) in the transaction
that makes or ends it.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from morag_worker.protocol import (
    BatchResult,
    BatchResultOutcome,
    ErrorDetail,
    HeartbeatResponse,
    LeaseRenewal,
    RenewedLease,
    ResultRequest,
    TaskAttempt,
    TaskError,
    TaskInfo,
    TaskSpec,
)
from morag_worker.server.attempts import AttemptLog
from morag_worker.server.auth import Caller
from morag_worker.server.db import Database
from morag_worker.server.listing import TaskPage, list_page
from morag_worker.server.rows import files_by_task, task_info, task_spec


class LeaseLost(Exception):
    """The caller's lease token is not the task's current one (409)."""


class NotFound(Exception):
    pass


class NotRetryable(Exception):
    """Only a failed or dead task can be retried (409); the message names its state."""


@dataclass(frozen=True)
class QueuePolicy:
    #: Lease length: a worker renews every third of it, so two lost heartbeats in a row
    #: are survived while a dead worker's tasks return within half a minute.
    lease_ttl_s: float = 30.0
    #: Attempts before a task is dead; three rides out one bad host and one flaky retry.
    max_attempts: int = 3
    #: Retry backoff: base * 2^attempt, capped, times a jitter in [0.5, 1.5).
    backoff_base_s: float = 2.0
    backoff_cap_s: float = 300.0


def new_task_id() -> str:
    return "t_" + secrets.token_hex(12)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _types(task_types: list[str]) -> dict[str, Any]:
    """The task types a claim may take, as each dialect's SQL reads them: a JSON list
    (SQLite's json_each) and a list (PostgreSQL's ``= ANY``, which its planner can see
    into, unlike a set-returning function: it then reads tasks_ready_user by type)."""
    return {"task_types": _json(task_types), "task_type_list": list(task_types)}


def result_hash(status: str, stored_json: str) -> str:
    """The identity of a result, for recognising a repeated upload: its status and the
    JSON stored for it (pydantic's output is deterministic for equal values)."""
    return hashlib.sha256(f"{status}\n{stored_json}".encode()).hexdigest()


class TaskQueue:
    def __init__(self, db: Database, policy: QueuePolicy) -> None:
        self.db = db
        self.policy = policy
        self.attempts = AttemptLog(db)

    # ---- user side ----------------------------------------------------------------------

    def submit(
        self,
        *,
        user_id: str,
        task_type: str,
        parameters: dict[str, Any],
        priority: int,
        files: list[tuple[str, str, int]],
        max_attempts: int | None,
        timeout_seconds: float | None,
    ) -> str:
        """Queue a task; ``files`` are (file_id, name, size) already in the file store."""
        task_id = new_task_id()
        with self.db.transaction():
            self.db.execute(
                "insert_task",
                task_id=task_id,
                user_id=user_id,
                task_type=task_type,
                priority=priority,
                parameters=_json(parameters),
                max_attempts=max_attempts or self.policy.max_attempts,
                timeout_seconds=timeout_seconds,
                now=time.time(),
            )
            for position, (file_id, name, size) in enumerate(files):
                self.db.execute(
                    "insert_task_file",
                    task_id=task_id,
                    position=position,
                    file_id=file_id,
                    name=name,
                    size=size,
                )
        return task_id

    def get(self, task_id: str, caller: Caller) -> TaskInfo:
        row = self.db.one("get_task", task_id=task_id)
        if row is None or not (caller.role == "admin" or row["user_id"] == caller.user_id):
            raise NotFound(f"task {task_id} not found")
        return self._info(row)

    def list_tasks(self, caller: Caller, page: TaskPage) -> tuple[list[TaskInfo], str | None]:
        """One page of the caller's tasks, newest first, and the cursor of the next page
        (None on the last). Raises BadCursor for a cursor this server did not make."""
        return list_page(self.db, caller, page)

    def result(self, task_id: str, caller: Caller) -> tuple[TaskInfo, dict[str, Any] | None]:
        row = self.db.one("get_task", task_id=task_id)
        if row is None or not (caller.role == "admin" or row["user_id"] == caller.user_id):
            raise NotFound(f"task {task_id} not found")
        result = json.loads(row["result"]) if row["result"] else None
        return self._info(row), result

    def cancel(self, task_id: str, caller: Caller) -> TaskInfo:
        info = self.get(task_id, caller)
        if not info.state.terminal:
            with self.db.transaction():
                if self.db.one("cancel", task_id=task_id, now=time.time()):
                    self.attempts.ended([task_id], "cancelled")
        return self.get(task_id, caller)

    def retry(self, task_id: str, caller: Caller) -> TaskInfo:
        """Put a failed or dead task back in the queue with fresh attempts. Raises
        NotFound (not the caller's) or NotRetryable (in any other state, checked in the
        same statement that changes it)."""
        self.get(task_id, caller)
        if self.db.one("retry", task_id=task_id, now=time.time()) is None:
            state = (self.db.one("lease_state", task_id=task_id) or {}).get("state", "gone")
            raise NotRetryable(
                f"task {task_id} is {state}: only a failed or dead task can be retried "
                "(cancel a queued or running one first, or submit it again)"
            )
        return self.get(task_id, caller)

    def attempts_of(self, task_id: str, caller: Caller) -> list[TaskAttempt]:
        """The task's attempts, oldest first; NotFound unless the caller may see it."""
        self.get(task_id, caller)
        return self.attempts.of_task(task_id)

    # ---- worker side ----------------------------------------------------------------------

    def reclaim_expired(self) -> list[dict[str, Any]]:
        """Return expired leases to the queue (or make them dead); the rows changed."""
        error = TaskError(
            type="lease_expired",
            message="the worker stopped renewing its lease (crashed, killed or cut off)",
            retryable=True,
        )
        with self.db.transaction():
            rows = self.db.query(
                "reclaim_expired",
                now=time.time(),
                backoff_base_s=self.policy.backoff_base_s,
                backoff_cap_s=self.policy.backoff_cap_s,
                lease_error=error.model_dump_json(),
            )
            self.attempts.ended([r["task_id"] for r in rows], "expired", error.model_dump_json())
        return rows

    def claim(
        self,
        caller: Caller,
        worker_id: str,
        task_types: list[str],
        limit: int,
        instance_id: str | None = None,
    ) -> list[TaskSpec]:
        """Lease up to ``limit`` tasks to ``worker_id`` (the supervisor instance
        ``instance_id``, which alone may release them all by unregistering)."""
        with self.db.transaction():
            rows = self.db.query(
                "claim_pool" if caller.pool else "claim",
                now=time.time(),
                lease_ttl_s=self.policy.lease_ttl_s,
                key_id=caller.key_id,
                instance_id=instance_id,
                worker_id=worker_id,
                **_types(task_types),
                user_id=caller.user_id,
                limit=limit,
            )
            task_ids = [row["task_id"] for row in rows]
            self.attempts.opened(task_ids)
            files = files_by_task(self.db, task_ids)
            specs = [task_spec(row, files.get(row["task_id"], [])) for row in rows]
        specs.sort(key=lambda spec: (-spec.priority, spec.task_id))
        return specs

    def next_due(self, caller: Caller, task_types: list[str]) -> float | None:
        """When the next task ``caller`` could claim (of ``task_types``) becomes available;
        None when none is waiting for its backoff to end."""
        row = self.db.one(
            "next_due_pool" if caller.pool else "next_due",
            now=time.time(),
            **_types(task_types),
            user_id=caller.user_id,
        )
        value = row.get("next_available") if row else None
        return float(value) if value is not None else None

    def heartbeat(self, caller: Caller, leases: list[LeaseRenewal]) -> HeartbeatResponse:
        reply = HeartbeatResponse()
        expires = time.time() + self.policy.lease_ttl_s
        with self.db.transaction():
            for lease in leases:
                row = self.db.one(
                    "renew",
                    expires=expires,
                    progress=lease.progress,
                    stage=lease.stage,
                    task_id=lease.task_id,
                    lease_token=lease.lease_token,
                    key_id=caller.key_id,
                )
                if row is not None:
                    reply.renewed.append(
                        RenewedLease(task_id=lease.task_id, lease_expires_at=expires)
                    )
                    continue
                state = self.db.one("lease_state", task_id=lease.task_id)
                cancelled = (
                    state is not None
                    and state["state"] == "cancelled"
                    and state["lease_token"] == lease.lease_token
                )
                (reply.cancel if cancelled else reply.lost).append(lease.task_id)
        return reply

    def finish(self, caller: Caller, task_id: str, body: ResultRequest) -> str:
        """Store a result or a failure; returns the task's new state."""
        payload = body.result if body.status == "completed" else body.error
        assert payload is not None  # the model's validator guarantees it
        stored = payload.model_dump_json()
        digest = result_hash(body.status, stored)
        now = time.time()
        timings = _json(body.timings)
        with self.db.transaction():
            state = self._store(caller, task_id, body, stored, digest, timings, now)
            if state is not None:
                error = stored if body.status == "failed" else None
                self.attempts.finished(task_id, body.lease_token, body.status, error, timings, now)
                return state
        return self._repeat_or_lost(task_id, body.lease_token, digest)

    def _store(
        self,
        caller: Caller,
        task_id: str,
        body: ResultRequest,
        stored: str,
        digest: str,
        timings: str,
        now: float,
    ) -> str | None:
        """The fenced update for a result or failure: the new state, or None when the
        caller's lease is not current."""
        if body.status == "completed":
            changed = self.db.one(
                "complete",
                result=stored,
                result_hash=digest,
                timings=timings,
                now=now,
                task_id=task_id,
                lease_token=body.lease_token,
                key_id=caller.key_id,
            )
            return "completed" if changed is not None else None
        assert body.error is not None
        changed = self.db.one(
            "fail",
            retryable=body.error.retryable,
            now=now,
            backoff_base_s=self.policy.backoff_base_s,
            backoff_cap_s=self.policy.backoff_cap_s,
            error=stored,
            result_hash=digest,
            timings=timings,
            task_id=task_id,
            lease_token=body.lease_token,
            key_id=caller.key_id,
        )
        return str(changed["state"]) if changed is not None else None

    def finish_batch(self, caller: Caller, items: list[BatchResult]) -> list[BatchResultOutcome]:
        """Several results in one transaction (one commit); each is fenced on its own and
        gets its own outcome, so one stale lease does not refuse the others."""
        outcomes = []
        with self.db.transaction():
            for item in items:
                try:
                    state = self.finish(caller, item.task_id, item)
                    outcomes.append(BatchResultOutcome(task_id=item.task_id, state=state))
                except LeaseLost as exc:
                    error = ErrorDetail(code="lease_lost", message=str(exc))
                    outcomes.append(BatchResultOutcome(task_id=item.task_id, error=error))
                except NotFound as exc:
                    error = ErrorDetail(code="not_found", message=str(exc))
                    outcomes.append(BatchResultOutcome(task_id=item.task_id, error=error))
        return outcomes

    def may_read_file(self, file_id: str, caller: Caller) -> bool:
        """An admin any file; a worker key the files of tasks it holds a lease on; a user
        the files of its own tasks."""
        if caller.role == "admin":
            return True
        if caller.role == "worker":
            return self.db.one("file_leased_by", file_id=file_id, key_id=caller.key_id) is not None
        return self.db.one("file_owned_by", file_id=file_id, user_id=caller.user_id) is not None

    def counts(self) -> dict[tuple[str, str], int]:
        """Tasks per (task type, state), for the metrics."""
        return {(r["task_type"], r["state"]): int(r["n"]) for r in self.db.query("queue_counts")}

    def referenced_files(self, file_ids: list[str]) -> set[str]:
        """Which of ``file_ids`` some task still refers to (the file sweep keeps those)."""
        rows = self.db.query("referenced_files", file_ids=json.dumps(file_ids))
        return {row["file_id"] for row in rows}

    def _repeat_or_lost(self, task_id: str, token: str, digest: str) -> str:
        row = self.db.one("lease_state", task_id=task_id)
        if row is None:
            raise NotFound(f"task {task_id} not found")
        if row["lease_token"] == token and row["result_hash"] == digest:
            return str(row["state"])  # the same result again: accepted, nothing changes
        raise LeaseLost(
            f"task {task_id}: lease token is not current (state {row['state']}); "
            "the lease expired or the task was re-leased — drop this result"
        )

    def release(self, caller: Caller, task_id: str, token: str) -> None:
        with self.db.transaction():
            released = self.db.one(
                "release", now=time.time(), task_id=task_id, lease_token=token, key_id=caller.key_id
            )
            if released is not None:
                self.attempts.ended([task_id], "released")
                return
        self._repeat_or_lost(task_id, token, digest="")

    def release_worker(self, caller: Caller, worker_id: str, instance_id: str = "") -> list[str]:
        """Give back the worker's leases: the instance's only, or (without one, as the
        seed's clients call it) every lease this key holds under the worker id."""
        with self.db.transaction():
            rows = self.db.query(
                "release_worker",
                now=time.time(),
                worker_id=worker_id,
                key_id=caller.key_id,
                instance_id=instance_id,
            )
            released = [row["task_id"] for row in rows]
            self.attempts.ended(released, "released")
        return released

    def _info(self, row: dict[str, Any]) -> TaskInfo:
        return task_info(row, files_by_task(self.db, [row["task_id"]]).get(row["task_id"], []))
