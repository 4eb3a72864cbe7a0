"""The database side of bench/fleet.py: a private PostgreSQL database (or the SQLite
file) per configuration, the backlog of tasks the fleet cannot claim, and the check for
double assignments in the server's attempts table.

The backlog is written straight into the tasks table with the server's own
``insert_task`` statement (submitting 100,000 tasks over HTTP would take minutes and is
not what is measured); the fleet is idle while it is written.
"""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
import time
from pathlib import Path
from typing import Any

from morag_worker.server.db import load_queries

#: Other task types the backlog holds (the fleet leases only ``noop``).
OTHER_TYPES = ("web", "document", "audio")
#: Users whose queued no-op tasks the fleet's user-scoped worker keys must skip.
OTHER_USERS = 50
#: Rows per transaction while the backlog is written.
BATCH_ROWS = 5000

# ":name" parameters as psycopg's "%(name)s" (the server's Database does the same).
_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")

DOUBLE_LEASES = """
SELECT count(*) AS n FROM task_attempts a JOIN task_attempts b
  ON a.task_id = b.task_id AND a.lease_token < b.lease_token
 AND a.started_at < coalesce(b.finished_at, 1e18)
 AND b.started_at < coalesce(a.finished_at, 1e18)
"""
TWICE_COMPLETED = """
SELECT count(*) AS n FROM (SELECT task_id FROM task_attempts WHERE outcome = 'completed'
                           GROUP BY task_id HAVING count(*) > 1) AS twice
"""


class Database:
    """Where one configuration's servers keep their queue."""

    def __init__(self, dialect: str, admin_url: str, name: str, sqlite_path: Path) -> None:
        self.dialect = dialect
        self.admin_url = admin_url
        self.name = name
        self.sqlite_path = sqlite_path

    @classmethod
    def create(cls, dialect: str, admin_url: str, root: Path) -> Database:
        name = "fleet_" + secrets.token_hex(5)
        if dialect == "postgres":
            import psycopg

            try:
                with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"CREATE DATABASE {name}")
            except psycopg.Error as exc:
                reason = " ".join(str(exc).split())
                raise SystemExit(
                    f"fleet.py: cannot create a database on {admin_url}: {reason}; start "
                    "PostgreSQL, set MORAG_TEST_POSTGRES_URL, or run --configs sqlite"
                ) from None
        return cls(dialect, admin_url, name, root / "r0" / "morag.db")

    def url(self, application: str) -> str:
        base = self.admin_url.split("?", 1)[0].rsplit("/", 1)[0]
        return f"{base}/{self.name}?application_name={application}"

    def server_url(self, replica: int) -> str:
        return self.url(f"fleet-r{replica}")

    def connect(self) -> Any:
        if self.dialect == "postgres":
            import psycopg

            return psycopg.connect(self.url("fleet-bench"), autocommit=True)
        conn = sqlite3.connect(self.sqlite_path, timeout=30, isolation_level=None)
        return conn

    def backend_pids(self) -> list[int]:
        """PostgreSQL's backend processes serving the replicas (none for SQLite)."""
        if self.dialect != "postgres":
            return []
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name "
                "LIKE 'fleet-r%%'",
                (self.name,),
            ).fetchall()
        return [int(row[0]) for row in rows]

    def drop(self) -> None:
        if self.dialect != "postgres":
            return
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")


def backlog_row(i: int, now: float) -> dict[str, Any]:
    """Backlog task number ``i``: alternately another type of the fleet's user and a
    no-op of another user; every fourth at priority 1 (ahead of the fleet's tasks)."""
    if i % 2:
        user_id, task_type = f"other-{i % OTHER_USERS}", "noop"
        parameters: dict[str, Any] = {}
    else:
        user_id, task_type = "fleet", OTHER_TYPES[(i // 2) % len(OTHER_TYPES)]
        parameters = {"url": f"https://example.com/{i}"} if task_type == "web" else {}
    return {
        "task_id": f"t_backlog{i:015x}",
        "user_id": user_id,
        "task_type": task_type,
        "priority": 1 if i % 4 == 3 else 0,
        "parameters": json.dumps(parameters),
        "max_attempts": 3,
        "timeout_seconds": None,
        "now": now - 3600 + i * 1e-3,  # older than every task the fleet will run
    }


def add_backlog(db: Database, start: int, count: int) -> None:
    """Queue backlog tasks ``start`` to ``start + count - 1``."""
    if count <= 0:
        return
    sql = load_queries(db.dialect)["insert_task"]
    if db.dialect == "postgres":
        sql = _PARAM.sub(r"%(\1)s", sql)
    now = time.time()
    conn = db.connect()
    try:
        for first in range(start, start + count, BATCH_ROWS):
            rows = [
                backlog_row(i, now) for i in range(first, min(first + BATCH_ROWS, start + count))
            ]
            if db.dialect == "postgres":
                with conn.transaction(), conn.cursor() as cur:
                    cur.executemany(sql, rows)
            else:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(sql, rows)
                conn.execute("COMMIT")
        if db.dialect == "postgres":
            conn.execute("ANALYZE tasks")  # as autovacuum would soon after such a load
    finally:
        conn.close()


def double_assignments(db: Database) -> int:
    """Attempts of one task that overlapped in time, plus tasks completed twice, as the
    server recorded them (run after the servers stopped)."""
    conn = db.connect()
    try:
        total = 0
        for sql in (DOUBLE_LEASES, TWICE_COMPLETED):
            total += int(conn.execute(sql).fetchone()[0])
        return total
    finally:
        conn.close()
