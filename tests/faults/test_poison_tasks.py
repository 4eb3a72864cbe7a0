"""Poison tasks: nothing one task carries may take a supervisor down.

Each task below once could (or could have) raised out of the supervisor's main loop, or
stranded the tasks leased with it. Through a real server and a real supervisor with
spawned children, every one now ends as a failed task with a readable error, and the
same supervisor, same process, goes on to complete ordinary work.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from faultkit import SERVER_ARGS, restarts, start, submit, task
from harness import Cluster, status, submit_noop, wait_for

from morag_worker.cli.api import TERMINAL, Api
from morag_worker.protocol import MAX_ERROR_MESSAGE_CHARS


def _ended(api: Api, task_id: str, timeout_s: float = 90) -> dict[str, Any]:
    return wait_for(
        lambda: (info := task(api, task_id))["state"] in TERMINAL and info,
        timeout_s,
        f"task {task_id} to end",
    )


def test_poison_tasks_fail_alone_and_the_supervisor_goes_on(
    cluster_factory: Callable[..., Cluster],
) -> None:
    cluster = cluster_factory(*SERVER_ARGS)
    user = cluster.user()
    proc, health = start(
        cluster,
        cluster.key_file("alice"),
        "--cpu-procs",
        "1",
        "--max-result-bytes",
        "1M",
    )
    pid = proc.pid

    def alive_and_working() -> None:
        assert proc.proc.poll() is None and proc.pid == pid
        assert user.wait(submit_noop(user, echo="still here"), 60)["state"] == "completed"

    # An 8,200-character URL (release 0.1.0 quoted it whole, past the protocol's limit on
    # an error message, and the supervisor died on its own error report).
    url = "http://127.0.0.1:9/" + "a" * 8200
    long_url = user.post_json("/api/v1/tasks", {"task_type": "web", "parameters": {"url": url}})
    info = _ended(user, long_url["task_id"])
    assert info["state"] == "failed" and not info["last_error"]["retryable"]
    assert len(info["last_error"]["message"]) <= MAX_ERROR_MESSAGE_CHARS
    alive_and_working()

    # A processor's own error of 100,000 characters, as bad input and as an exception.
    bad = _ended(user, submit(user, "bigerror", bad_input=True))
    assert bad["state"] == "failed" and bad["last_error"]["type"] == "bad_input"
    assert "characters cut" in bad["last_error"]["message"]
    raised = _ended(user, submit(user, "bigerror", max_attempts=1))
    assert raised["state"] == "dead" and raised["last_error"]["type"] == "internal"
    alive_and_working()

    # A result over --max-result-bytes, and one JSON cannot hold: final, not retried.
    big = _ended(user, submit(user, "bigresult", mib=3))
    assert big["state"] == "failed" and big["last_error"]["type"] == "result_too_large"
    assert "--max-result-bytes" in big["last_error"]["message"] and big["attempt"] == 1
    odd = _ended(user, submit(user, "unserialisable"))
    assert odd["state"] == "failed" and odd["last_error"]["type"] == "bad_result"
    alive_and_working()

    # A child that writes garbage into its pipe, and one that dies mid-message.
    garbage = _ended(user, submit(user, "garbage", max_attempts=1))
    assert garbage["state"] == "dead" and garbage["last_error"]["type"] == "crash"
    assert "could not read" in garbage["last_error"]["message"]
    half = _ended(user, submit(user, "halfmessage", max_attempts=1))
    assert half["state"] == "dead" and half["last_error"]["type"] == "crash"
    assert "exited with code 7" in half["last_error"]["message"]
    assert restarts(health, "crash") == 2
    alive_and_working()

    # A parameter a careless processor trusts.
    careless = _ended(user, submit(user, "assume", n="twelve", max_attempts=1))
    assert careless["state"] == "dead" and "ValueError" in careless["last_error"]["message"]
    alive_and_working()
    assert status(health)["children"][0]["state"] == "idle"
    errors = {e["type"] for e in status(health)["recent_errors"]}
    assert {"bad_input", "result_too_large", "bad_result", "child_protocol"} <= errors


def _nested(depth: int) -> dict[str, Any]:
    root: dict[str, Any] = {}
    node = root
    for _ in range(depth):
        node["a"] = {}
        node = node["a"]
    return root


def test_a_deeply_nested_task_does_not_strand_the_tasks_leased_with_it(
    cluster: Cluster,
) -> None:
    """Release 0.1.0's supervisor read a lease reply as one document: a task nested 250
    deep (once accepted by the server's multipart path, now refused there) made the whole
    reply unreadable and stranded every task in it. The row is written into the database
    directly, below the server's validation, as an older server would have stored it."""
    user = cluster.user()
    ordinary = [submit_noop(user, echo=f"n{n}") for n in range(2)]
    deep = submit_noop(user, echo="deep")
    db = sqlite3.connect(cluster.root / "server" / "morag.db")
    params = {"echo": "deep", "nested": _nested(250)}
    db.execute("UPDATE tasks SET parameters = ? WHERE task_id = ?", (json.dumps(params), deep))
    db.commit()
    db.close()
    _, health = cluster.supervisor(cluster.key_file("alice"), "--cpu-procs", "1", "--prefetch", "2")
    for task_id in [*ordinary, deep]:
        assert user.wait(task_id, 60)["state"] == "completed"
    assert status(health)["recent_errors"] == []


def test_lease_reply_is_read_task_by_task() -> None:
    from morag_worker.client import read_lease_reply

    good = {
        "task_id": "t_good",
        "task_type": "noop",
        "lease_token": "tok1",
        "lease_expires_at": time.time() + 30,
        "attempt": 1,
        "max_attempts": 3,
    }
    broken = {**good, "task_id": "t_broken", "lease_token": "tok2", "parameters": [1, 2]}
    reply = read_lease_reply(200, json.dumps({"tasks": [broken, good, "junk"]}).encode())
    assert [t.task_id for t in reply.tasks] == ["t_good"]
    assert [(i, t) for i, t, _ in reply.unreadable] == [("t_broken", "tok2"), ("", "")]
    assert "parameters" in reply.unreadable[0][2]
