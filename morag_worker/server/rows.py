"""Database rows to protocol models."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any, Literal

from morag_worker.protocol import InputFile, TaskError, TaskInfo, TaskSpec, TaskState
from morag_worker.server.db import Database


def files_by_task(db: Database, task_ids: list[str]) -> dict[str, list[InputFile]]:
    """The input files of several tasks in one query, in upload order."""
    if not task_ids:
        return {}
    found: dict[str, list[InputFile]] = defaultdict(list)
    for row in db.query("files_of_tasks", task_ids=json.dumps(task_ids)):
        found[row["task_id"]].append(
            InputFile(
                file_id=row["file_id"],
                name=row["name"],
                size=row["size"],
                sha256=row["file_id"],
                url=f"/api/v1/files/{row['file_id']}",
            )
        )
    return found


def task_spec(row: dict[str, Any], files: list[InputFile]) -> TaskSpec:
    return TaskSpec(
        task_id=row["task_id"],
        task_type=row["task_type"],
        parameters=json.loads(row["parameters"]),
        input_files=files,
        lease_token=row["lease_token"],
        lease_expires_at=row["lease_expires_at"],
        attempt=row["attempt"],
        max_attempts=row["max_attempts"],
        timeout_seconds=row["timeout_seconds"],
        priority=row["priority"],
        user_id=row["user_id"],
    )


def task_info(row: dict[str, Any], files: list[InputFile]) -> TaskInfo:
    error = row["last_error"]
    return TaskInfo(
        task_id=row["task_id"],
        task_type=row["task_type"],
        state=TaskState(row["state"]),
        user_id=row["user_id"],
        priority=row["priority"],
        attempt=row["attempt"],
        max_attempts=row["max_attempts"],
        parameters=json.loads(row["parameters"]),
        input_files=files,
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        progress=row["progress"],
        stage=row["stage"],
        worker_id=row["worker_id"],
        last_error=TaskError.model_validate_json(error) if error else None,
        timings=json.loads(row["timings"]) if row["timings"] else {},
        indexed_at=row["indexed_at"],
        index_state=_index_state(row),
        index_attempts=row.get("index_attempts") or 0,
        index_error=row.get("index_error"),
    )


def _index_state(row: dict[str, Any]) -> Literal["pending", "indexed", "failed"] | None:
    if row["state"] != "completed":
        return None
    if row["indexed_at"] is not None:
        return "indexed"
    return "failed" if row.get("index_failed_at") is not None else "pending"
