"""The queue's contract, identical for SQLite and PostgreSQL (see conftest)."""

from __future__ import annotations

import threading
import time

import pytest

from morag_worker.protocol import LeaseRenewal, ResultRequest, TaskError, TaskResult
from morag_worker.server.db import Database
from morag_worker.server.queue import Caller, LeaseLost, QueuePolicy, TaskQueue

ALICE_WORKER = Caller(key_id="kw_alice", user_id="alice", role="worker", pool=False)
BOB_WORKER = Caller(key_id="kw_bob", user_id="bob", role="worker", pool=False)
POOL = Caller(key_id="kw_pool", user_id="ops", role="worker", pool=True)
ALICE = Caller(key_id="ku_alice", user_id="alice", role="user", pool=False)
TYPES = ["document", "noop"]


def make_queue(db: Database, **policy: float) -> TaskQueue:
    defaults = {"lease_ttl_s": 30.0, "max_attempts": 3, "backoff_base_s": 0.0}
    return TaskQueue(db, QueuePolicy(**{**defaults, **policy}))  # type: ignore[arg-type]


def submit(q: TaskQueue, user: str = "alice", priority: int = 0) -> str:
    return q.submit(
        user_id=user,
        task_type="noop",
        parameters={"n": 1},
        priority=priority,
        files=[],
        max_attempts=None,
        timeout_seconds=60,
    )


def done(token: str, content: str = "ok") -> ResultRequest:
    return ResultRequest(lease_token=token, status="completed", result=TaskResult(content=content))


def failed(token: str, retryable: bool) -> ResultRequest:
    return ResultRequest(
        lease_token=token,
        status="failed",
        error=TaskError(type="boom", message="it broke", retryable=retryable),
    )


def test_claim_complete_and_duplicate_result(db: Database) -> None:
    q = make_queue(db)
    task_id = submit(q)
    [spec] = q.claim(ALICE_WORKER, "w1", TYPES, 5)
    assert spec.task_id == task_id and spec.attempt == 1 and len(spec.lease_token) >= 32
    assert q.claim(ALICE_WORKER, "w1", TYPES, 5) == []
    assert q.finish(ALICE_WORKER, task_id, done(spec.lease_token)) == "completed"
    # the identical result again is a no-op; a different one with the same token is not
    assert q.finish(ALICE_WORKER, task_id, done(spec.lease_token)) == "completed"
    with pytest.raises(LeaseLost):
        q.finish(ALICE_WORKER, task_id, done(spec.lease_token, content="other"))
    info, result = q.result(task_id, ALICE)
    assert info.state.value == "completed" and result is not None and result["content"] == "ok"


def test_stale_token_is_refused_and_changes_nothing(db: Database) -> None:
    q = make_queue(db)
    task_id = submit(q)
    [spec] = q.claim(ALICE_WORKER, "w1", TYPES, 1)
    with pytest.raises(LeaseLost):
        q.finish(ALICE_WORKER, task_id, done("0" * 32))
    with pytest.raises(LeaseLost):  # right token, wrong key
        q.finish(BOB_WORKER, task_id, done(spec.lease_token))
    info = q.get(task_id, ALICE)
    assert info.state.value == "leased" and info.finished_at is None


def test_expired_lease_requeues_then_dies(db: Database) -> None:
    q = make_queue(db, lease_ttl_s=0.05, max_attempts=2)
    task_id = submit(q)
    first = q.claim(ALICE_WORKER, "w1", TYPES, 1)[0]
    time.sleep(0.1)
    assert [r["state"] for r in q.reclaim_expired()] == ["queued"]
    second = q.claim(ALICE_WORKER, "w2", TYPES, 1)[0]
    assert second.attempt == 2 and second.lease_token != first.lease_token
    with pytest.raises(LeaseLost):  # the first holder's late result is fenced off
        q.finish(ALICE_WORKER, task_id, done(first.lease_token))
    time.sleep(0.1)
    assert [r["state"] for r in q.reclaim_expired()] == ["dead"]
    info = q.get(task_id, ALICE)
    assert info.state.value == "dead" and info.last_error is not None
    assert info.last_error.type == "lease_expired"


def test_failures_retry_with_backoff_or_fail(db: Database) -> None:
    q = make_queue(db, backoff_base_s=10.0)
    retry_id, final_id = submit(q), submit(q)
    specs = {s.task_id: s for s in q.claim(ALICE_WORKER, "w1", TYPES, 2)}
    assert q.finish(ALICE_WORKER, retry_id, failed(specs[retry_id].lease_token, True)) == "queued"
    assert q.finish(ALICE_WORKER, final_id, failed(specs[final_id].lease_token, False)) == "failed"
    assert q.claim(ALICE_WORKER, "w1", TYPES, 2) == []  # backoff: not yet available
    due = q.next_due(ALICE_WORKER, TYPES)
    assert due is not None and due > time.time() + 4  # base 10 s * 2 * jitter >= 0.5
    # tasks of other types, and other users' tasks, never wake this worker's long-poll
    assert q.next_due(ALICE_WORKER, ["audio"]) is None
    other = Caller(key_id="kw_bob", user_id="bob", role="worker", pool=False)
    assert q.next_due(other, TYPES) is None
    assert q.get(final_id, ALICE).last_error.message == "it broke"  # type: ignore[union-attr]


def test_release_counts_no_attempt(db: Database) -> None:
    q = make_queue(db)
    task_id = submit(q)
    spec = q.claim(ALICE_WORKER, "w1", TYPES, 1)[0]
    q.release(ALICE_WORKER, task_id, spec.lease_token)
    again = q.claim(ALICE_WORKER, "w2", TYPES, 1)[0]
    assert again.task_id == task_id and again.attempt == 1
    with pytest.raises(LeaseLost):
        q.release(ALICE_WORKER, task_id, spec.lease_token)


def test_isolation_and_pool_keys(db: Database) -> None:
    q = make_queue(db)
    alice_task, bob_task = submit(q, "alice"), submit(q, "bob")
    assert [s.task_id for s in q.claim(ALICE_WORKER, "w", TYPES, 10)] == [alice_task]
    assert q.claim(ALICE_WORKER, "w", TYPES, 10) == []
    assert [s.task_id for s in q.claim(POOL, "p", TYPES, 10)] == [bob_task]


def test_priority_and_type_filter(db: Database) -> None:
    q = make_queue(db)
    low, high = submit(q, priority=0), submit(q, priority=5)
    assert q.claim(ALICE_WORKER, "w", ["audio"], 10) == []
    assert [s.task_id for s in q.claim(ALICE_WORKER, "w", TYPES, 1)] == [high]
    assert [s.task_id for s in q.claim(ALICE_WORKER, "w", TYPES, 1)] == [low]


def test_heartbeat_renews_reports_lost_and_cancelled(db: Database) -> None:
    q = make_queue(db)
    kept, cancelled = submit(q), submit(q)
    specs = {s.task_id: s for s in q.claim(ALICE_WORKER, "w", TYPES, 2)}
    q.cancel(cancelled, ALICE)
    reply = q.heartbeat(
        ALICE_WORKER,
        [
            LeaseRenewal(
                task_id=kept, lease_token=specs[kept].lease_token, progress=0.5, stage="x"
            ),
            LeaseRenewal(task_id=cancelled, lease_token=specs[cancelled].lease_token),
            LeaseRenewal(task_id="t_missing", lease_token="0" * 32),
        ],
    )
    assert [r.task_id for r in reply.renewed] == [kept]
    assert reply.cancel == [cancelled] and reply.lost == ["t_missing"]
    info = q.get(kept, ALICE)
    assert info.progress == 0.5 and info.stage == "x"


def test_concurrent_claims_never_share_a_task(db_url: str, db: Database) -> None:
    q = make_queue(db)
    ids = {submit(q) for _ in range(60)}
    claimed: list[str] = []
    lock = threading.Lock()

    def claimer() -> None:
        own = Database(db_url)  # its own connection, as another server replica would have
        try:
            mine = make_queue(own)
            while batch := mine.claim(ALICE_WORKER, "w", TYPES, 3):
                with lock:
                    claimed.extend(s.task_id for s in batch)
        finally:
            own.close()

    threads = [threading.Thread(target=claimer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(ids)
