"""Task lists: the filters a page of tasks may ask for, and the keyset-paged query.

Users see their own tasks, admins everyone's (optionally one user's). The text search
matches the ``url`` parameter and the input files' names anywhere, case-insensitively
(ASCII letters on SQLite, all letters on PostgreSQL), or a task id exactly; it scans the
caller's tasks in creation order and stops at a page, so it needs no index of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from morag_worker.protocol import TaskInfo
from morag_worker.server.auth import Caller
from morag_worker.server.db import Database
from morag_worker.server.paging import decode_cursor, encode_cursor
from morag_worker.server.rows import files_by_task, task_info


@dataclass(frozen=True)
class TaskPage:
    """Which tasks a list asks for: filters, page size and where the page starts."""

    state: str | None = None
    task_type: str | None = None
    limit: int = 50
    cursor: str = ""
    #: Only this user's tasks (for admins, who otherwise see everyone's).
    owner: str | None = None
    #: Created in [created_after, created_before), epoch seconds.
    created_after: float | None = None
    created_before: float | None = None
    #: Text in the URL or an input file's name, or a whole task id.
    text: str | None = None


def like_pattern(text: str) -> str:
    """A LIKE pattern matching ``text`` anywhere, its own wildcards taken literally
    (the queries say ``ESCAPE '\\'``)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def list_page(db: Database, caller: Caller, page: TaskPage) -> tuple[list[TaskInfo], str | None]:
    """One page of the tasks ``caller`` may see, newest first, and the cursor of the next
    page (None on the last). Raises BadCursor for a cursor this server did not make."""
    before_at, before_id = decode_cursor(page.cursor) if page.cursor else (None, None)
    user = page.owner if caller.role == "admin" else caller.user_id
    if page.owner and user != page.owner:
        return [], None  # a user asking for another user's tasks: there are none to see
    rows = db.query(
        "list_tasks_of_user" if user else "list_tasks",
        user_id=user,
        state=page.state,
        task_type=page.task_type,
        created_after=page.created_after,
        created_before=page.created_before,
        text=page.text,
        pattern=like_pattern(page.text) if page.text else None,
        before_at=before_at,
        before_id=before_id,
        limit=page.limit + 1,  # one more tells whether another page follows
    )
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    files = files_by_task(db, [row["task_id"] for row in rows])
    infos = [task_info(row, files.get(row["task_id"], [])) for row in rows]
    last = rows[-1] if more else None
    return infos, encode_cursor(last["created_at"], last["task_id"]) if last else None
