"""Quarantine that ends, and leasing that stops while nothing could run the work.

Children are real; the boot failure is the fault plugin's (``FAULT_BOOT_FAIL``), made to
heal by removing a marker file, the way a fixed driver or a freed device heals a slot.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import requests
from faultkit import SERVER_ARGS, metrics, ready, restarts, start, task
from harness import Cluster, log_lines, status, submit_noop, wait_for

from morag_worker.supervisor.pool import CRASH_BUDGET


def _child_state(health: int) -> str:
    try:
        return str(status(health)["children"][0]["state"])
    except requests.RequestException:
        return "not answering yet"


def test_a_quarantined_worker_leases_nothing_then_a_probe_returns_it_to_service(
    cluster_factory: Callable[..., Cluster], tmp_path: Path
) -> None:
    cluster = cluster_factory(*SERVER_ARGS)
    user = cluster.user()
    broken = tmp_path / "broken"
    broken.write_text("the only child cannot boot while this file exists")
    proc, health = start(
        cluster,
        cluster.key_file("alice"),
        "--cpu-procs",
        "1",
        "--quarantine-probe",
        "3",
        env={"FAULT_BOOT_FAIL": "morag-cpu0", "FAULT_BOOT_FAIL_WHILE": str(broken)},
        wait_ready=False,
    )
    wait_for(lambda: _child_state(health) == "quarantined", 120, "quarantined")
    # Nothing here can run a task: none is leased (no lease-and-release churn), so the
    # queue keeps them for other workers with no attempt spent.
    ids = [submit_noop(user, echo=f"n{n}") for n in range(3)]
    time.sleep(2)
    assert {task(user, t)["attempt"] for t in ids} == {0}
    assert status(health)["lease_types"] == [] and status(health)["tasks"] == []
    assert ready(health)[0] == 503

    broken.unlink()  # the slot heals: the next probe boots and it serves again
    for task_id in ids:
        info = user.wait(task_id, 120)
        assert info["state"] == "completed" and info["attempt"] == 1
    child = status(health)["children"][0]
    assert child["state"] in ("idle", "busy") and child["quarantine"] is None
    assert child["quarantines"] >= 1
    messages = [line["message"] for line in log_lines(proc)]
    assert any("probing quarantined child cpu0" in m for m in messages)
    assert any("back in service" in m for m in messages)
    assert ready(health)[0] == 200


def test_idle_children_killed_from_outside_are_not_quarantined(
    cluster_factory: Callable[..., Cluster],
) -> None:
    """Decision (docs/operations.md): a signal the supervisor did not send that ends an
    idle child says something about the host (an operator, the OOM killer), not the
    slot. It is restarted with a backoff and counted as ``killed``, not as a crash."""
    cluster = cluster_factory(*SERVER_ARGS)
    user = cluster.user()
    _, health = start(cluster, cluster.key_file("alice"), "--cpu-procs", "1")
    for _ in range(CRASH_BUDGET):  # as many as would quarantine a crashing slot
        child = wait_for(
            lambda: [c for c in status(health)["children"] if c["state"] == "idle"],
            60,
            "an idle child",
        )[0]
        os.kill(child["pid"], signal.SIGKILL)
        wait_for(
            lambda p=child["pid"]: status(health)["children"][0]["pid"] not in (p, None),
            90,
            "restarted",
        )
    assert restarts(health, "killed") == CRASH_BUDGET and restarts(health, "crash") == 0
    assert status(health)["children"][0]["quarantines"] == 0
    assert user.wait(submit_noop(user), 60)["state"] == "completed"
    assert metrics(health)[("morag_worker_capacity", ())] == 1
