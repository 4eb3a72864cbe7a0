"""Planned replacement of children: SIGHUP (rolling), --max-tasks-per-child, and an idle
child that stops answering."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

from faultkit import SERVER_ARGS, restarts, start
from harness import Cluster, status, submit_noop, wait_for

from morag_worker.cli.api import TERMINAL


def test_sighup_recycles_one_child_at_a_time_and_loses_no_task(
    cluster_factory: Callable[..., Cluster],
) -> None:
    cluster = cluster_factory(*SERVER_ARGS)
    user = cluster.user()
    proc, health = start(cluster, cluster.key_file("alice"), "--cpu-procs", "2")
    before = {c["name"]: c["pid"] for c in status(health)["children"]}
    ids = [submit_noop(user, sleep_s=0.4, echo=str(n)) for n in range(24)]
    wait_for(lambda: status(health)["done"] >= 3, 60, "work under way")
    proc.signal(signal.SIGHUP)
    # Watch the pool until every child was replaced: never more than one out of service.
    most_out = 0
    while True:
        children = status(health)["children"]
        out = sum(c["state"] not in ("idle", "busy") for c in children)
        most_out = max(most_out, out)
        if all(c["pid"] not in (before[c["name"]], None) for c in children) and out == 0:
            break
        assert proc.proc.poll() is None
        time.sleep(0.02)
    assert most_out == 1  # the other child kept serving throughout
    wait_for(
        lambda: all(
            t["state"] in TERMINAL
            for t in user.get("/api/v1/tasks?limit=100")["tasks"]
            if t["task_id"] in ids
        ),
        120,
        "all tasks",
    )
    tasks = {t["task_id"]: t for t in user.get("/api/v1/tasks?limit=100")["tasks"]}
    assert {tasks[i]["state"] for i in ids} == {"completed"}
    assert {tasks[i]["attempt"] for i in ids} == {1}  # none lost, none run twice
    assert restarts(health, "reload") == 2
    assert restarts(health, "crash") == 0


def test_max_tasks_per_child_and_unresponsive_idle_child(
    cluster_factory: Callable[..., Cluster],
) -> None:
    cluster = cluster_factory(*SERVER_ARGS)
    user = cluster.user()
    proc, health = start(
        cluster,
        cluster.key_file("alice"),
        "--cpu-procs",
        "1",
        "--max-tasks-per-child",
        "3",
        "--child-unresponsive-timeout",
        "2",
    )
    # 3 ± 10 % rounds to 3: the child is replaced after every third task.
    for n in range(7):
        assert user.wait(submit_noop(user, echo=str(n)), 30)["state"] == "completed"
    wait_for(lambda: restarts(health, "max_tasks") == 2, 30, "two max_tasks recycles")
    child = wait_for(
        lambda: [c for c in status(health)["children"] if c["state"] == "idle"], 30, "idle"
    )[0]
    assert child["tasks_until_recycle"] == 2

    # An idle child that stops stamping its heartbeat (stopped by SIGSTOP) is replaced.
    os.kill(child["pid"], signal.SIGSTOP)
    wait_for(lambda: restarts(health, "unresponsive") == 1, 30, "unresponsive restart")
    new = wait_for(
        lambda: [c for c in status(health)["children"] if c["state"] == "idle"], 30, "idle"
    )[0]
    assert new["pid"] != child["pid"]
    assert user.wait(submit_noop(user), 30)["state"] == "completed"
    assert restarts(health, "crash") == 0
    assert proc.proc.poll() is None
