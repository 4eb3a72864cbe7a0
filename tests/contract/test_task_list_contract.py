"""Listing tasks (filters, keyset paging) and workers, identical on SQLite and PostgreSQL."""

from __future__ import annotations

import time

import pytest

from morag_worker.protocol import RegisterRequest
from morag_worker.server.auth import Caller
from morag_worker.server.db import Database
from morag_worker.server.paging import BadCursor
from morag_worker.server.queue import QueuePolicy, TaskPage, TaskQueue
from morag_worker.server.workers import WorkerRegistry

ALICE = Caller(key_id="ku_alice", user_id="alice", role="user", pool=False)
BOB = Caller(key_id="ku_bob", user_id="bob", role="user", pool=False)
ADMIN = Caller(key_id="ka", user_id="root", role="admin", pool=False)
ALICE_WORKER = Caller(key_id="kw_alice", user_id="alice", role="worker", pool=False)


def submit(q: TaskQueue, user: str, task_type: str) -> str:
    return q.submit(
        user_id=user,
        task_type=task_type,
        parameters={},
        priority=0,
        files=[],
        max_attempts=None,
        timeout_seconds=60,
    )


def all_pages(q: TaskQueue, who: Caller, **page: object) -> list[list[str]]:
    pages, cursor = [], ""
    while True:
        tasks, cursor_next = q.list_tasks(who, TaskPage(cursor=cursor, **page))  # type: ignore[arg-type]
        pages.append([t.task_id for t in tasks])
        if cursor_next is None:
            return pages
        cursor = cursor_next


def test_pages_cover_every_task_once_newest_first(db: Database) -> None:
    q = TaskQueue(db, QueuePolicy())
    ids = [submit(q, "alice", "noop" if n % 3 else "document") for n in range(11)]
    submit(q, "bob", "noop")
    pages = all_pages(q, ALICE, limit=4)
    assert [len(p) for p in pages] == [4, 4, 3]
    flat = [t for p in pages for t in p]
    assert flat == list(reversed(ids))  # newest first, none twice, none missing
    # a task submitted while paging lands on the first page, not in the middle
    _, cursor = q.list_tasks(ALICE, TaskPage(limit=4))
    newer = submit(q, "alice", "noop")
    second, _ = q.list_tasks(ALICE, TaskPage(limit=4, cursor=cursor or ""))
    assert [t.task_id for t in second] == flat[4:8] and newer not in flat


def test_filters_by_type_state_and_owner(db: Database) -> None:
    q = TaskQueue(db, QueuePolicy())
    docs = [submit(q, "alice", "document") for _ in range(3)]
    noops = [submit(q, "alice", "noop") for _ in range(2)]
    bobs = submit(q, "bob", "noop")
    [leased] = q.claim(ALICE_WORKER, "w1", ["noop"], 1)
    by_type = [t for p in all_pages(q, ALICE, task_type="document", limit=2) for t in p]
    assert sorted(by_type) == sorted(docs)
    queued_noops = [t for p in all_pages(q, ALICE, task_type="noop", state="queued") for t in p]
    assert set(queued_noops) == set(noops) - {leased.task_id}
    assert all_pages(q, ALICE, state="leased") == [[leased.task_id]]
    assert bobs not in [t for p in all_pages(q, ALICE) for t in p]
    assert bobs in [t for p in all_pages(q, ADMIN) for t in p]
    assert all_pages(q, BOB, task_type="document") == [[]]


def test_same_created_at_pages_by_task_id(db: Database) -> None:
    """Tasks created in the same instant (a batch, a coarse clock) still page exactly."""
    q = TaskQueue(db, QueuePolicy())
    ids = [submit(q, "alice", "noop") for _ in range(5)]
    db._conn.execute("UPDATE tasks SET created_at = 1000.5")  # one instant for all
    flat = [t for p in all_pages(q, ALICE, limit=2) for t in p]
    assert flat == sorted(ids, reverse=True)


def test_a_forged_cursor_is_refused(db: Database) -> None:
    q = TaskQueue(db, QueuePolicy())
    for bad in ("nonsense!", "W10", "WyJ4IiwgMV0"):  # not base64 JSON / [] / ["x", 1]
        with pytest.raises(BadCursor):
            q.list_tasks(ALICE, TaskPage(cursor=bad))


def _register(db: Database, worker_id: str, key_id: str, user: str, seen: float) -> None:
    registry = WorkerRegistry(db, live_window_s=60)
    who = Caller(key_id=key_id, user_id=user, role="worker", pool=False)
    body = RegisterRequest(
        worker_id=worker_id, host="h", task_types=["noop"], capacity=2, version="1"
    )
    registry.register(who, body)


def test_workers_visible_to_owner_pool_and_admin_with_running_count(db: Database) -> None:
    now = time.time()
    db.execute(
        "insert_key",
        key_id="kw_pool",
        prefix="p",
        key_hash="h1",
        user_id="ops",
        role="worker",
        pool=True,
        name="",
        created_at=now,
        expires_at=None,
    )
    _register(db, "alice-w", "kw_alice", "alice", now)
    _register(db, "pool-w", "kw_pool", "ops", now)
    _register(db, "carol-w", "kw_carol", "carol", now)
    q = TaskQueue(db, QueuePolicy())
    submit(q, "alice", "noop")
    q.claim(ALICE_WORKER, "alice-w", ["noop"], 1)

    def seen(who: Caller) -> dict[str, tuple[int, bool]]:
        workers = WorkerRegistry(db, live_window_s=60).visible(who)
        return {w.worker_id: (w.running, w.pool) for w in workers}

    assert seen(ALICE) == {"alice-w": (1, False), "pool-w": (0, True)}
    assert set(seen(ADMIN)) == {"alice-w", "pool-w", "carol-w"}
