"""The attempts history: one row per lease, kept after the task moves on.

The queue opens a row in the claim's transaction and closes it in the transaction that
ends the lease: a result or failure (by the lease's token), an expiry, a release or a
cancel (by task: a task has at most one open attempt, its current lease). A retry of a
failed task starts a new series of attempts and keeps the old rows, so the task page
shows every worker that ran it and every error it met. Lease tokens stay in this table:
they are the workers' fencing secrets and never leave the server.
"""

from __future__ import annotations

import json
import time
from typing import Literal

from morag_worker.protocol import TaskAttempt, TaskError
from morag_worker.server.db import Database

#: How an attempt ended ("running" while it has not).
Outcome = Literal["completed", "failed", "expired", "released", "cancelled"]


class AttemptLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    def opened(self, task_ids: list[str]) -> None:
        """Record the leases a claim just made (call inside the claim's transaction)."""
        if task_ids:
            self.db.execute("open_attempts", task_ids=json.dumps(task_ids))

    def finished(
        self,
        task_id: str,
        lease_token: str,
        outcome: Outcome,
        error_json: str | None,
        timings_json: str,
        now: float,
    ) -> None:
        """Close the attempt a result or failure was sent for."""
        self.db.execute(
            "close_attempt",
            task_id=task_id,
            lease_token=lease_token,
            outcome=outcome,
            error=error_json,
            timings=timings_json,
            now=now,
        )

    def ended(self, task_ids: list[str], outcome: Outcome, error_json: str | None = None) -> None:
        """Close the open attempt of each task (expiry, release, cancel)."""
        if task_ids:
            self.db.execute(
                "close_open_attempts",
                task_ids=json.dumps(task_ids),
                outcome=outcome,
                error=error_json,
                now=time.time(),
            )

    def of_task(self, task_id: str) -> list[TaskAttempt]:
        """The task's attempts, oldest first (ownership is the caller's to check)."""
        return [
            TaskAttempt(
                attempt=row["attempt"],
                worker_id=row["worker_id"],
                started_at=row["started_at"],
                finished_at=row["finished_at"],
                outcome=row["outcome"] or "running",
                error=TaskError.model_validate_json(row["error"]) if row["error"] else None,
                timings=json.loads(row["timings"]) if row["timings"] else {},
            )
            for row in self.db.query("attempts_of_task", task_id=task_id)
        ]
