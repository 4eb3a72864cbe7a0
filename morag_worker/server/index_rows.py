"""Completed results as the search index sees them: due, indexed, failing, failed.

The indexer asks for the rows due (:meth:`IndexRows.due`) and reports each outcome;
operators list failed rows, retry them or queue every result again (a rebuild). All of
it is the ``index_*`` columns of ``tasks`` (migration 0004), through named queries.
"""

from __future__ import annotations

import time
from typing import Any

from morag_worker.server.db import Database


class IndexRows:
    def __init__(self, db: Database) -> None:
        self.db = db

    # ---- the indexer -------------------------------------------------------------------

    def due(self, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` completed results to index now, oldest first, with their
        ``index_attempts`` (rows waiting out a backoff and failed rows are left out)."""
        return self.db.query("unindexed", limit=limit, now=time.time())

    def mark_indexed(self, task_id: str) -> None:
        self.db.execute("mark_indexed", task_id=task_id, now=time.time())

    def attempt_failed(self, task_id: str, error: str, next_at: float, max_attempts: int) -> None:
        """Count a failed attempt; the row is marked failed at ``max_attempts``."""
        self.db.execute(
            "index_attempt_failed",
            task_id=task_id,
            error=error,
            next_at=next_at,
            now=time.time(),
            max_attempts=max_attempts,
        )

    # ---- operators ---------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """``{"pending": n, "failed": n}`` over completed results not yet indexed."""
        row = self.db.one("index_counts") or {}
        return {"pending": int(row.get("pending") or 0), "failed": int(row.get("failed") or 0)}

    def failures(self, limit: int) -> list[dict[str, Any]]:
        return self.db.query("index_failures", limit=limit)

    def retry(self, task_ids: list[str], all_failed: bool) -> tuple[list[str], list[str]]:
        """Fresh attempts for these rows (and every failed one with ``all_failed``);
        returns (retried, named but not waiting for indexing)."""
        retried: list[str] = []
        not_failed: list[str] = []
        with self.db.transaction():
            if all_failed:
                retried += [row["task_id"] for row in self.db.query("retry_index_failed")]
            for task_id in task_ids:
                if task_id in retried:
                    continue
                found = self.db.query("retry_index", task_id=task_id)
                (retried if found else not_failed).append(task_id)
        return retried, not_failed

    def reindex_all(self) -> int:
        """Queue every completed result for indexing again; returns how many."""
        return self.db.execute("reindex_all")
