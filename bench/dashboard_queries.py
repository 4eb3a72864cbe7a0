"""What the dashboard's queries cost on a big queue, with the indexes of migration 0005
against the same database without them (the baseline, measured in the same run).

A SQLite database (``--postgres URL`` for PostgreSQL; a fresh schema is made and dropped)
is filled with ``--tasks`` tasks (100,000) of 50 users, a fifth with two input files and a
third with a URL, created evenly over the last ``--days`` (30). Timed, as the median of
``--runs``:

- the overview an admin polls every 5 s (counts by type and state, the last hour in
  one-minute bars, the oldest queued task);
- the first page of everyone's tasks, newest first (the admin's Tasks page, every 2 s);
- a user's first page; a text search in one user's tasks and in everyone's.

Prints a table with the ratio of each query on the indexes before migration 0005 to on
its indexes.
Run with ``make bench`` or ``python bench/dashboard_queries.py``.
"""

from __future__ import annotations

import argparse
import random
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from morag_worker.server.auth import Caller
from morag_worker.server.db import Database
from morag_worker.server.listing import TaskPage, list_page
from morag_worker.server.migrate import Migrator
from morag_worker.server.overview import overview
from morag_worker.server.workers import WorkerRegistry

ADMIN = Caller(key_id="ka", user_id="root", role="admin", pool=False)
USER = Caller(key_id="ku", user_id="user7", role="user", pool=False)
INDEXES = ("tasks_created", "tasks_user_created", "tasks_finished", "tasks_type_state")
STATES = ["completed"] * 14 + ["failed", "dead", "cancelled", "queued", "leased"]


def fill(db: Database, n: int, days: float) -> None:
    rng = random.Random(15)
    now = time.time()
    tasks, files = [], []
    for i in range(n):
        task_id = f"t_{secrets.token_hex(12)}"
        state = rng.choice(STATES)
        created = now - days * 86400 * (1 - i / n)
        finished = (
            created + rng.uniform(1, 60) if state in ("completed", "failed", "dead") else None
        )
        url = f"https://site{i % 97}.example/article-{i}" if i % 3 == 0 else None
        params = f'{{"url": "{url}"}}' if url else "{}"
        tasks.append(
            (task_id, f"user{i % 50}", "web" if url else "document", state, params, created,
             created, finished)
        )  # fmt: skip
        if i % 5 == 0:
            files += [(task_id, 0, secrets.token_hex(32), f"report-{i}.pdf", 1000),
                      (task_id, 1, secrets.token_hex(32), f"notes-{i}.docx", 1000)]  # fmt: skip
    conn = db._conn
    if db.dialect == "postgres":
        with conn.cursor() as cur, conn.transaction():
            cur.executemany(
                "INSERT INTO tasks (task_id, user_id, task_type, state, parameters, created_at, "
                "available_at, finished_at, max_attempts) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,3)",
                tasks,
            )
            cur.executemany("INSERT INTO task_files VALUES (%s,%s,%s,%s,%s)", files)
        conn.execute("ANALYZE")
        return
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO tasks (task_id, user_id, task_type, state, parameters, created_at, "
        "available_at, finished_at, max_attempts) VALUES (?,?,?,?,?,?,?,?,3)",
        tasks,
    )
    conn.executemany("INSERT INTO task_files VALUES (?,?,?,?,?)", files)
    conn.execute("COMMIT")
    conn.execute("ANALYZE")


def timed(step: Callable[[], object], runs: int) -> float:
    samples = []
    for _ in range(runs):
        began = time.perf_counter()
        step()
        samples.append(time.perf_counter() - began)
    return statistics.median(samples) * 1000


def measure(db: Database, runs: int) -> dict[str, float]:
    registry = WorkerRegistry(db, live_window_s=60)
    return {
        "overview (admin)": timed(lambda: overview(db, registry, ADMIN), runs),
        "overview (a user)": timed(lambda: overview(db, registry, USER), runs),
        "everyone's tasks, page 1": timed(lambda: list_page(db, ADMIN, TaskPage(limit=25)), runs),
        "a user's tasks, page 1": timed(lambda: list_page(db, USER, TaskPage(limit=25)), runs),
        "a user's search 'report-1'": timed(
            lambda: list_page(db, USER, TaskPage(limit=25, text="report-1")), runs
        ),
        "everyone's search 'site5.'": timed(
            lambda: list_page(db, ADMIN, TaskPage(limit=25, text="site5.")), runs
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--days", type=float, default=30.0, help="the tasks' age spread")
    parser.add_argument("--postgres", default="", help="a PostgreSQL URL instead of SQLite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.postgres or f"sqlite:///{Path(tmp) / 'bench.db'}"
        db = Database(url, "normal")
        schema = ""
        if db.dialect == "postgres":
            schema = "bench_" + secrets.token_hex(4)
            db._conn.execute(f"CREATE SCHEMA {schema}; SET search_path TO {schema}")
        try:
            Migrator(db).migrate()
            fill(db, args.tasks, args.days)
            indexed = measure(db, args.runs)
            for name in INDEXES:  # back to the indexes before migration 0005
                db._conn.execute(f"DROP INDEX {name}")
            db._conn.execute("CREATE INDEX tasks_user ON tasks (user_id, created_at)")
            bare = measure(db, args.runs)
        finally:
            if schema:
                db._conn.execute(f"DROP SCHEMA {schema} CASCADE")
            db.close()
    print(f"{db.dialect}, {args.tasks:,} tasks over {args.days:g} days, median of {args.runs} runs")
    print(f"{'query':32} {'0005 ms':>11} {'before ms':>11} {'ratio':>7}")
    for name, ms in indexed.items():
        print(f"{name:32} {ms:11.2f} {bare[name]:11.2f} {bare[name] / ms:6.1f}x")


if __name__ == "__main__":
    main()
