"""Reading the figures straight from the server's database."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

from chaoskit.common import TASK_ID


class Store:
    """Reads task rows and attempts straight from the server's database (SQLite file or
    PostgreSQL URL), so the figures do not depend on the server being up."""

    QUERY = (
        "SELECT t.task_id, t.state, t.attempt, t.result IS NOT NULL AS has_result, "
        "COALESCE(length(t.result), 0) AS result_len, t.last_error IS NOT NULL AS has_error, "
        "(SELECT count(*) FROM task_attempts a WHERE a.task_id = t.task_id "
        " AND a.outcome = 'completed') AS completions "
        "FROM tasks t WHERE t.task_id IN ({ids})"
    )

    def __init__(self, sqlite_path: Path | None = None, pg_url: str | None = None) -> None:
        self.sqlite_path = sqlite_path
        self.pg_url = pg_url

    def rows(self, task_ids: list[str]) -> dict[str, dict[str, Any]] | None:
        """The rows of ``task_ids``, or None while the database cannot be read."""
        if not task_ids:
            return {}
        assert all(TASK_ID.match(t) for t in task_ids)
        sql = self.QUERY.format(ids=",".join(f"'{t}'" for t in task_ids))
        try:
            if self.pg_url:
                import psycopg
                from psycopg.rows import dict_row

                with psycopg.connect(self.pg_url, connect_timeout=3, row_factory=dict_row) as c:
                    return {r["task_id"]: dict(r) for r in c.execute(sql).fetchall()}
            assert self.sqlite_path is not None
            uri = f"file:{self.sqlite_path}?mode=ro"
            with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5)) as conn:
                conn.row_factory = sqlite3.Row
                return {r["task_id"]: dict(r) for r in conn.execute(sql).fetchall()}
        except Exception:  # the database restarting, a file mid-checkpoint: read again
            return None
