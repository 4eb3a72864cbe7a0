"""Worker ids belong to one live supervisor; leases belong to a supervisor instance."""

from __future__ import annotations

import os
import signal
import socket

import requests
from harness import Cluster, log_lines, status, submit_noop, wait_for

from morag_worker.cli.local import Proc


def _register(cluster: Cluster, key: str, worker_id: str, **extra: object) -> requests.Response:
    return requests.post(
        f"{cluster.url}/api/v1/workers/register",
        json={
            "worker_id": worker_id,
            "host": "elsewhere",
            "pid": 4242,
            "protocol_version": 1,
            **extra,
        },
        headers={"Authorization": f"Bearer {key}"},
        timeout=5,
    )


def test_a_live_worker_id_belongs_to_its_key_and_instance(cluster: Cluster) -> None:
    owner, other = cluster.key("alice", "worker"), cluster.key("bob", "worker")
    first = _register(cluster, owner, "w-1")
    assert first.status_code == 200 and first.json()["instance_id"].startswith("wi_")
    taken = _register(cluster, other, "w-1", task_types=["audio"])
    error = taken.json()["error"]
    assert taken.status_code == 409 and error["code"] == "worker_id_taken"
    assert "registered by another key" in error["message"] and error["field"] == "worker_id"
    again = _register(cluster, owner, "w-1")
    assert again.status_code == 409 and again.json()["error"]["code"] == "worker_id_in_use"
    assert again.json()["error"]["details"]["pid"] == 4242
    workers = {w["worker_id"]: w for w in cluster.admin.get("/api/v1/workers")["workers"]}
    assert workers["w-1"]["instance_id"] == first.json()["instance_id"]

    # Another instance's unregister neither forgets the worker nor releases its leases.
    user = cluster.user()
    task_id = submit_noop(user)
    auth = {"Authorization": f"Bearer {owner}"}
    mine = {**auth, "X-Morag-Worker-Instance": first.json()["instance_id"]}
    leased = requests.post(
        f"{cluster.url}/api/v1/workers/w-1/lease", json={"max_tasks": 1}, headers=mine, timeout=5
    ).json()["tasks"]
    assert [t["task_id"] for t in leased] == [task_id]
    stranger = {**auth, "X-Morag-Worker-Instance": "wi_someone_else"}
    gone = requests.delete(f"{cluster.url}/api/v1/workers/w-1", headers=stranger, timeout=5)
    assert gone.status_code == 200 and gone.json()["released"] == []
    assert user.get(f"/api/v1/tasks/{task_id}")["state"] == "leased"
    assert "w-1" in {w["worker_id"] for w in cluster.admin.get("/api/v1/workers")["workers"]}
    own = requests.delete(f"{cluster.url}/api/v1/workers/w-1", headers=mine, timeout=5)
    assert own.json()["released"] == [task_id]


def test_a_second_supervisor_with_a_configured_id_is_refused(cluster: Cluster) -> None:
    key = cluster.key_file("alice")
    first, _ = cluster.supervisor(key, "--cpu-procs", "1", "--worker-id", "gpu-box-7")
    second, _ = cluster.supervisor(
        key, "--cpu-procs", "1", "--worker-id", "gpu-box-7", wait_ready=False
    )
    assert second.proc.wait(timeout=60) == 2
    refusal = [line["message"] for line in log_lines(second) if line["level"] == "ERROR"]
    assert any(
        f"in use by a live supervisor on {socket.gethostname()!r} (pid {first.pid}" in m
        for m in refusal
    ), refusal
    assert first.proc.poll() is None


def test_a_second_supervisor_with_the_default_id_gets_its_own(cluster: Cluster) -> None:
    """Two supervisors on one host share the default id ``<hostname>-cpu``; the second
    registers as ``-2``, and stopping it leaves the first one's running task alone."""
    key = cluster.key_file("alice")
    user = cluster.user()
    first, first_health = cluster.supervisor(key, "--cpu-procs", "1", "--prefetch", "0")
    task_id = submit_noop(user, sleep_s=4)
    wait_for(lambda: status(first_health)["children"][0]["task_id"] == task_id, 30, "running")
    second, second_health = cluster.supervisor(key, "--cpu-procs", "1")
    base = f"{socket.gethostname()}-cpu"
    assert status(second_health)["worker_id"] == f"{base}-2"
    assert any("registering as" in line["message"] for line in log_lines(second))
    assert second.stop() == 0
    info = user.wait(task_id, 60)
    assert info["state"] == "completed" and info["attempt"] == 1  # never released
    assert first.proc.poll() is None


def test_a_restart_after_a_crash_takes_the_id_over(cluster: Cluster) -> None:
    key = cluster.key_file("alice")
    user = cluster.user()
    crashed, health = cluster.supervisor(key, "--cpu-procs", "1", "--worker-id", "box-9")
    task_id = submit_noop(user, sleep_s=60)
    wait_for(lambda: status(health)["children"][0]["task_id"] == task_id, 30, "running")
    os.killpg(crashed.pid, signal.SIGKILL)  # the supervisor and its children die at once
    crashed.proc.wait(timeout=10)
    successor, _ = cluster.supervisor(key, "--cpu-procs", "1", "--worker-id", "box-9")
    assert any("taking it over" in line["message"] for line in log_lines(successor))
    user.delete(f"/api/v1/tasks/{task_id}")
    assert user.wait(submit_noop(user), 60)["state"] == "completed"
    assert isinstance(successor, Proc) and successor.proc.poll() is None
