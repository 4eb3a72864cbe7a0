"""Replies of the dashboard's own calls (``/ui/api``): what the pages read."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from morag_worker.protocol import Role, WorkerInfo


class SessionInfo(BaseModel):
    user_id: str
    role: Role
    key_id: str
    expires_at: float | None = Field(description="when the session ends (null: a Bearer key)")


class SignedOut(BaseModel):
    signed_out: bool = Field(description="false when the call carried no session")


class QueueCount(BaseModel):
    task_type: str
    state: str
    n: int


class Throughput(BaseModel):
    """Tasks that ended, per bucket of ``bucket_s`` seconds from ``since`` (oldest first)."""

    since: float
    bucket_s: float
    completed: list[int]
    failed: list[int] = Field(description="failed and dead")


class OldestQueued(BaseModel):
    task_id: str
    task_type: str
    user_id: str
    created_at: float
    available_at: float = Field(description="a retry waits out its backoff until then")


class Overview(BaseModel):
    """The queue as the caller may see it: an admin everything, a user its own tasks
    and the workers that may run them."""

    generated_at: float
    all_users: bool
    counts: list[QueueCount]
    throughput: Throughput
    oldest_queued: OldestQueued | None
    workers: list[WorkerInfo]


class ContentPart(BaseModel):
    task_id: str
    part: int
    parts: int
    html: str = Field(description="sanitised HTML of this part of the result's Markdown")
    metadata: dict[str, Any] | None = Field(
        default=None, description="the result's metadata (with part 0 only)"
    )


class ResultItems(BaseModel):
    task_id: str
    kind: Literal["chunks", "segments"]
    offset: int
    total: int
    items: list[dict[str, Any]]
