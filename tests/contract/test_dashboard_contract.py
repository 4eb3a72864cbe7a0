"""What the dashboard reads and changes, identical on SQLite and PostgreSQL: task list
filters, the attempts history, retry, worker status reports, sessions and the overview."""

from __future__ import annotations

import hashlib
import time

import pytest
from test_queue_contract import ALICE, ALICE_WORKER, POOL, done, failed, make_queue

from morag_worker.protocol import ChildReport, RegisterRequest, Role, WorkerStatusReport
from morag_worker.server.auth import AuthError, Caller, KeyStore
from morag_worker.server.db import Database
from morag_worker.server.overview import BUCKET_S, overview
from morag_worker.server.queue import LeaseLost, NotFound, NotRetryable, TaskPage, TaskQueue
from morag_worker.server.sessions import SessionStore
from morag_worker.server.workers import WorkerRegistry

BOB = Caller(key_id="ku_bob", user_id="bob", role="user", pool=False)
ADMIN = Caller(key_id="ka", user_id="root", role="admin", pool=False)
TYPES = ["document", "noop", "web"]


def submit(
    q: TaskQueue, user: str = "alice", url: str = "", files: tuple[str, ...] = (), **kw: int
) -> str:
    return q.submit(
        user_id=user,
        task_type="web" if url else "document" if files else "noop",
        parameters={"url": url} if url else {},
        priority=0,
        files=[(hashlib.sha256(n.encode()).hexdigest(), n, 10) for n in files],
        max_attempts=kw.get("max_attempts"),
        timeout_seconds=60,
    )


def listed(q: TaskQueue, who: Caller, **page: object) -> list[str]:
    ids, cursor = [], ""
    while True:
        tasks, cursor_next = q.list_tasks(who, TaskPage(cursor=cursor, limit=2, **page))  # type: ignore[arg-type]
        ids += [t.task_id for t in tasks]
        if cursor_next is None:
            return ids
        cursor = cursor_next


def test_text_search_matches_urls_and_file_names_with_wildcards_taken_literally(
    db: Database,
) -> None:
    q = make_queue(db)
    web = submit(q, url="https://Example.org/Annual_Report%25.html")
    near = submit(q, url="https://example.org/annualXreport.html")  # "_" must not match X
    doc = submit(q, files=("notes.txt", "QUARTERLY report.PDF"))
    plain = submit(q)
    bobs = submit(q, user="bob", files=("report.pdf",))
    assert set(listed(q, ALICE, text="report")) == {web, near, doc}
    assert listed(q, ALICE, text="annual_report") == [web]
    assert listed(q, ALICE, text="%25") == [web]
    assert listed(q, ALICE, text="report.pdf") == [doc]
    assert listed(q, ALICE, text=plain) == [plain]  # a whole task id
    assert listed(q, ALICE, text="nowhere") == []
    assert set(listed(q, ADMIN, text="report")) == {web, near, doc, bobs}
    assert listed(q, ADMIN, text="report", owner="bob") == [bobs]
    assert listed(q, ALICE, owner="bob") == []  # a user never reaches another's tasks


def test_time_range_and_filters_combine_with_paging(db: Database) -> None:
    q = make_queue(db)
    ids = [submit(q) for _ in range(6)]
    for n, task_id in enumerate(ids):  # one task per hour, in order
        db._conn.execute(
            "UPDATE tasks SET created_at = "
            + str(1000.0 + 3600 * n)
            + f" WHERE task_id = '{task_id}'"
        )
    window = listed(q, ALICE, created_after=1000.0 + 3600, created_before=1000.0 + 3600 * 4)
    assert window == [ids[3], ids[2], ids[1]]  # newest first, bounds [after, before)
    assert listed(q, ALICE, created_after=1000.0 + 3600 * 5) == [ids[5]]
    [spec] = q.claim(ALICE_WORKER, "w1", TYPES, 1)
    assert listed(q, ALICE, state="leased", created_before=1e10) == [spec.task_id]


def test_every_lease_leaves_an_attempt_with_its_end(db: Database) -> None:
    q = make_queue(db, lease_ttl_s=30.0, max_attempts=5)
    task_id = submit(q)

    def lease() -> str:
        db._conn.execute(f"UPDATE tasks SET available_at = 0 WHERE task_id = '{task_id}'")
        [spec] = q.claim(ALICE_WORKER, "w1", TYPES, 1)
        return spec.lease_token

    token = lease()
    [running] = q.attempts_of(task_id, ALICE)
    assert running.outcome == "running" and running.worker_id == "w1" and running.attempt == 1
    assert q.finish(ALICE_WORKER, task_id, failed(token, retryable=True)) == "queued"
    lease()
    db._conn.execute(f"UPDATE tasks SET lease_expires_at = 1 WHERE task_id = '{task_id}'")
    assert [r["task_id"] for r in q.reclaim_expired()] == [task_id]
    token = lease()
    q.release(ALICE_WORKER, task_id, token)
    token = lease()
    timed = done(token).model_copy(update={"timings": {"process_s": 1.5}})
    assert q.finish(ALICE_WORKER, task_id, timed) == "completed"
    q.finish(ALICE_WORKER, task_id, timed)  # a repeated result adds nothing
    attempts = q.attempts_of(task_id, ALICE)
    assert [(a.attempt, a.outcome) for a in attempts] == [
        (1, "failed"),
        (2, "expired"),
        (3, "released"),
        (3, "completed"),  # a release counts no attempt
    ]
    assert attempts[0].error is not None and attempts[0].error.type == "boom"
    assert attempts[1].error is not None and attempts[1].error.type == "lease_expired"
    assert attempts[3].timings == {"process_s": 1.5} and attempts[3].error is None
    assert all(a.finished_at is not None and a.finished_at >= a.started_at for a in attempts)
    with pytest.raises(NotFound):
        q.attempts_of(task_id, BOB)


def test_cancel_and_unregister_close_the_open_attempt(db: Database) -> None:
    q = make_queue(db)
    first, second = submit(q), submit(q)
    specs = {s.task_id: s for s in q.claim(ALICE_WORKER, "w1", TYPES, 2, instance_id="wi_1")}
    q.cancel(first, ALICE)
    with pytest.raises(LeaseLost):  # the worker's late result changes nothing
        q.finish(ALICE_WORKER, first, done(specs[first].lease_token))
    assert [a.outcome for a in q.attempts_of(first, ALICE)] == ["cancelled"]
    assert q.release_worker(ALICE_WORKER, "w1", "wi_1") == [second]
    assert [a.outcome for a in q.attempts_of(second, ALICE)] == ["released"]


def test_retry_puts_failed_and_dead_tasks_back_and_nothing_else(db: Database) -> None:
    q = make_queue(db)
    failing = submit(q)
    [spec] = q.claim(ALICE_WORKER, "w1", TYPES, 1)
    assert q.finish(ALICE_WORKER, failing, failed(spec.lease_token, retryable=False)) == "failed"
    with pytest.raises(NotFound):
        q.retry(failing, BOB)
    again = q.retry(failing, ALICE)
    assert again.state.value == "queued" and again.attempt == 0 and again.last_error is None
    assert again.finished_at is None and again.worker_id is None
    with pytest.raises(NotRetryable, match="is queued"):
        q.retry(failing, ALICE)  # the state it is in now is named
    [spec] = q.claim(ALICE_WORKER, "w2", TYPES, 1)
    assert spec.attempt == 1
    assert [(a.attempt, a.worker_id, a.outcome) for a in q.attempts_of(failing, ALICE)] == [
        (1, "w1", "failed"),
        (1, "w2", "running"),
    ]
    q.finish(ALICE_WORKER, failing, done(spec.lease_token))
    with pytest.raises(NotRetryable, match="is completed"):
        q.retry(failing, ADMIN)
    dying = submit(q, max_attempts=1)
    [spec] = q.claim(POOL, "pool-w", TYPES, 1)
    assert q.finish(POOL, dying, failed(spec.lease_token, retryable=True)) == "dead"
    assert q.retry(dying, ADMIN).state.value == "queued"  # an admin retries anyone's


def test_a_worker_status_report_is_kept_for_the_instance_that_holds_the_id(
    db: Database,
) -> None:
    registry = WorkerRegistry(db, live_window_s=60)
    body = RegisterRequest(worker_id="w1", host="h", task_types=["noop"], capacity=1)
    instance = registry.register(ALICE_WORKER, body)
    report = WorkerStatusReport(
        children=[ChildReport(name="cpu0", pool="cpu", cores=[0, 1], state="busy", models=["m"])],
        tasks_done=3,
    )
    other_key = Caller(key_id="kw_mallory", user_id="mallory", role="worker", pool=False)
    registry.store_status(other_key, "w1", "", report.model_copy(update={"tasks_done": 99}))
    registry.store_status(
        ALICE_WORKER, "w1", "wi_stale", report.model_copy(update={"tasks_done": 98})
    )
    assert _status(registry) is None  # neither another key nor another instance may report
    registry.store_status(ALICE_WORKER, "w1", instance, report)
    seen = _status(registry)
    assert seen is not None and seen.tasks_done == 3 and seen.children[0].cores == [0, 1]
    registry.db.execute("touch_worker", worker_id="w1", now=0)  # gone quiet; a new instance:
    registry.register(ALICE_WORKER, body)
    assert _status(registry) is None  # its predecessor's children are not its own


def _status(registry: WorkerRegistry) -> WorkerStatusReport | None:
    [worker] = registry.visible(ADMIN)
    return worker.status


def test_sessions_are_hashed_end_on_sign_out_expiry_and_revocation(db: Database) -> None:
    keys = KeyStore(db)
    sessions = SessionStore(db, keys)
    created = keys.create("alice", Role.user)
    who = keys.verify(created.key)
    token, expires_at = sessions.create(who)
    assert sessions.verify(token) == who and expires_at > time.time() + 3600
    stored = [
        row["session_hash"] for row in db._conn.execute("SELECT session_hash FROM ui_sessions")
    ]
    assert stored == [hashlib.sha256(token.encode()).hexdigest()]  # never the token itself
    with pytest.raises(AuthError):
        sessions.verify(token + "x")
    sessions.delete(token)
    with pytest.raises(AuthError, match="sign in again"):
        sessions.verify(token)
    expiring, _ = sessions.create(who)
    db._conn.execute("UPDATE ui_sessions SET expires_at = 1")
    with pytest.raises(AuthError, match="expired"):
        sessions.verify(expiring)
    revoked, _ = sessions.create(who)
    keys.revoke(who.key_id)
    with pytest.raises(AuthError):
        sessions.verify(revoked)


def test_overview_counts_buckets_and_oldest_queued_per_caller(db: Database) -> None:
    q = make_queue(db)
    now = time.time()
    minute = (now // BUCKET_S) * BUCKET_S  # the current (last) bar starts here
    ended = {
        "completed": [submit(q) for _ in range(3)],
        "failed": [submit(q)],
        "dead": [submit(q)],
        "cancelled": [submit(q)],
    }
    for state, ids in ended.items():
        for task_id in ids:
            db._conn.execute(
                f"UPDATE tasks SET state = '{state}', finished_at = {minute + 1} "
                f"WHERE task_id = '{task_id}'"
            )
    old = ended["completed"][0]
    db._conn.execute(
        f"UPDATE tasks SET finished_at = {minute - 10 * BUCKET_S + 1} WHERE task_id = '{old}'"
    )
    stale = ended["completed"][1]
    db._conn.execute(f"UPDATE tasks SET finished_at = {now - 7200} WHERE task_id = '{stale}'")
    first_queued = submit(q)
    submit(q)
    submit(q, user="bob")
    registry = WorkerRegistry(db, live_window_s=60)
    mine = overview(db, registry, ALICE)
    assert mine.throughput.completed[-1] == 1 and mine.throughput.completed[-11] == 1
    assert sum(mine.throughput.completed) == 2  # the one two hours ago is out of the window
    assert mine.throughput.failed[-1] == 2 and sum(mine.throughput.failed) == 2  # failed + dead
    assert len(mine.throughput.completed) == 60
    counts = {(c.task_type, c.state): c.n for c in mine.counts}
    assert counts[("noop", "queued")] == 2 and counts[("noop", "cancelled")] == 1
    assert mine.oldest_queued is not None and mine.oldest_queued.task_id == first_queued
    everyone = overview(db, registry, ADMIN)
    assert {(c.task_type, c.state): c.n for c in everyone.counts}[("noop", "queued")] == 3
    assert overview(db, registry, BOB).throughput.completed == [0] * 60
