"""A claim reads only the queue its key may take from (migration 0006): behind a backlog
of other users' and other types' tasks, older and of higher priority, a user's worker
still gets its own tasks in order, and the plan reads them through tasks_ready_user
instead of walking the backlog. The plan is checked, not a time (bench/fleet.py
measures the cost)."""

from __future__ import annotations

import re
import sqlite3
import time

from test_queue_contract import ALICE_WORKER, POOL, make_queue

from morag_worker.server.db import Database, load_queries
from morag_worker.server.queue import TaskQueue

BACKLOG = 2000


def _fill(q: TaskQueue) -> list[str]:
    """The backlog, then alice's three no-op tasks (the last at priority 1)."""
    for i in range(BACKLOG):
        other_user = i % 2 == 1
        q.submit(
            user_id=f"user{i % 20}" if other_user else "alice",
            task_type="noop" if other_user else "document",
            parameters={},
            priority=1 if i % 4 == 3 else 0,
            files=[],
            max_attempts=None,
            timeout_seconds=None,
        )
    return [
        q.submit(
            user_id="alice",
            task_type="noop",
            parameters={"n": n},
            priority=1 if n == 2 else 0,
            files=[],
            max_attempts=None,
            timeout_seconds=None,
        )
        for n in range(3)
    ]


def _plan(db: Database, db_url: str, name: str, **params: object) -> str:
    sql = load_queries(db.dialect)[name]
    if db.dialect == "sqlite":
        with sqlite3.connect(db_url.removeprefix("sqlite:///")) as conn:
            rows = conn.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
        return "\n".join(str(row[-1]) for row in rows)
    import psycopg

    sql = re.sub(r"(?<![:\w]):([A-Za-z_]\w*)", r"%(\1)s", sql)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("ANALYZE tasks")  # as autovacuum does after a load like this
        return "\n".join(row[0] for row in conn.execute("EXPLAIN " + sql, params).fetchall())


def test_a_users_claim_skips_the_backlog_of_other_users_and_types(
    db: Database, db_url: str
) -> None:
    q = make_queue(db)
    first, second, urgent = _fill(q)
    claimed = [s.task_id for s in q.claim(ALICE_WORKER, "w1", ["noop"], 2)]
    assert claimed == [urgent, first]  # priority first, then age
    assert [s.task_id for s in q.claim(ALICE_WORKER, "w1", ["noop"], 5)] == [second]
    plan = _plan(db, db_url, "claim", **_claim_params("alice"))
    assert "tasks_ready_user" in plan, plan


def _claim_params(user_id: str) -> dict[str, object]:
    """The parameters of a claim of up to two no-op tasks, as TaskQueue.claim sends them."""
    return {
        "now": time.time(),
        "lease_ttl_s": 30.0,
        "key_id": "k",
        "instance_id": None,
        "worker_id": "w1",
        "task_types": '["noop"]',
        "task_type_list": ["noop"],
        "user_id": user_id,
        "limit": 2,
    }


def test_a_pool_key_claims_every_users_tasks_in_order(db: Database, db_url: str) -> None:
    q = make_queue(db)
    _fill(q)
    specs = q.claim(POOL, "w1", ["noop"], 3)
    # the backlog's priority-1 no-op tasks of other users come first, oldest first
    assert [s.priority for s in specs] == [1, 1, 1]
    assert all(s.user_id != "alice" for s in specs)
    plan = _plan(db, db_url, "claim_pool", **_claim_params("ops"))
    # walked in claim order, not sorted whole: a pool may take every one of them
    assert "tasks_ready" in plan and "tasks_ready_user" not in plan, plan
