"""The whole loop with real processes: throughput, crashes, drain, outages, isolation."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import requests
from harness import Cluster, log_lines, status, submit_noop, wait_for

from morag_worker.cli.api import TERMINAL, Api
from morag_worker.cli.local import start_server


def _states(api: Api, ids: list[str]) -> dict[str, dict]:
    tasks = {t["task_id"]: t for t in api.get("/api/v1/tasks?limit=500")["tasks"]}
    return {i: tasks[i] for i in ids}


def _all_done(api: Api, ids: list[str]) -> bool:
    return all(t["state"] in TERMINAL for t in _states(api, ids).values())


def test_two_hundred_tasks_two_children_none_lost_none_twice(cluster: Cluster) -> None:
    user = cluster.user()
    _, health = cluster.supervisor(cluster.key_file("alice"), "--cpu-procs", "2")
    ids = [submit_noop(user, echo=f"task {n}") for n in range(200)]
    wait_for(lambda: _all_done(user, ids), 180, "200 tasks")
    tasks = _states(user, ids)
    assert {t["state"] for t in tasks.values()} == {"completed"}
    assert {t["attempt"] for t in tasks.values()} == {1}  # each leased exactly once
    for n in (0, 99, 199):
        assert user.get(f"/api/v1/tasks/{ids[n]}/result")["result"]["content"] == f"task {n}"
    metrics = requests.get(f"http://127.0.0.1:{health}/metrics", timeout=5).text
    assert 'morag_worker_tasks_total{outcome="completed",task_type="noop"} 200.0' in metrics
    children = {c["name"]: c["tasks_done"] for c in status(health)["children"]}
    assert sum(children.values()) == 200 and all(children.values())  # both children worked


def test_child_killed_mid_task_is_retried(cluster: Cluster) -> None:
    user = cluster.user()
    _, health = cluster.supervisor(cluster.key_file("alice"), "--cpu-procs", "1")
    task_id = submit_noop(user, sleep_s=3)
    running = wait_for(
        lambda: [c for c in status(health)["children"] if c["task_id"] == task_id],
        30,
        "task running",
    )
    os.kill(running[0]["pid"], signal.SIGKILL)
    info = user.wait(task_id, 60)
    assert info["state"] == "completed" and info["attempt"] == 2
    # the failed first attempt is kept, with the exit status decoded
    assert info["last_error"]["type"] == "crash" and info["last_error"]["retryable"]
    assert "killed by SIGKILL" in info["last_error"]["message"]
    restarted = status(health)["children"][0]
    assert restarted["pid"] != running[0]["pid"] and restarted["restarts"] >= 1
    seed_health = requests.get(f"http://127.0.0.1:{health}/health", timeout=5).json()
    assert seed_health["status"] == "healthy" and seed_health["worker_type"] == "cpu"
    assert seed_health["active_tasks"] == 0 and seed_health["uptime"] > 0
    assert seed_health["worker_id"]


def test_second_signal_stops_at_once_and_gives_the_task_back(cluster: Cluster) -> None:
    user = cluster.user()
    proc, health = cluster.supervisor(
        cluster.key_file("alice"), "--cpu-procs", "1", "--drain-timeout", "600"
    )
    task_id = submit_noop(user, sleep_s=600)
    wait_for(lambda: status(health)["children"][0]["task_id"] == task_id, 30, "running")
    proc.signal(signal.SIGTERM)  # drain: would wait up to 600 s for the task
    wait_for(
        lambda: requests.get(f"http://127.0.0.1:{health}/ready", timeout=5).status_code == 503,
        10,
        "not ready while draining",
    )
    proc.signal(signal.SIGTERM)  # fast stop
    assert proc.proc.wait(timeout=60) == 0
    info = user.get(f"/api/v1/tasks/{task_id}")
    assert info["state"] == "queued" and info["attempt"] == 0  # released, no attempt used


def test_supervisor_killed_mid_task_second_supervisor_finishes(cluster: Cluster) -> None:
    user = cluster.user()
    key = cluster.key_file("alice")
    first, health = cluster.supervisor(key, "--cpu-procs", "1", "--worker-id", "first")
    task_id = submit_noop(user, sleep_s=5)
    child = wait_for(
        lambda: [c for c in status(health)["children"] if c["task_id"] == task_id],
        30,
        "task running",
    )[0]
    os.kill(first.pid, signal.SIGKILL)
    # its child dies with it (PR_SET_PDEATHSIG): no orphan keeps working on the task
    wait_for(lambda: not Path(f"/proc/{child['pid']}").exists(), 10, "child gone")
    cluster.supervisor(key, "--cpu-procs", "1", "--worker-id", "second")
    info = user.wait(task_id, 60)
    assert info["state"] == "completed" and info["attempt"] == 2
    assert info["worker_id"] is None or info["worker_id"] == "second"


def test_stale_token_and_duplicate_result_over_http(cluster: Cluster) -> None:
    user = cluster.user()
    worker = requests.Session()
    worker.headers["Authorization"] = f"Bearer {cluster.key('alice', 'worker')}"
    task_id = submit_noop(user)
    base = f"{cluster.url}/api/v1/workers/w1"
    spec = worker.post(f"{base}/lease", json={"max_tasks": 1}, timeout=10).json()["tasks"][0]
    body = {"lease_token": "f" * 32, "status": "completed", "result": {"content": "forged"}}
    stale = worker.post(f"{base}/tasks/{task_id}/result", json=body, timeout=10)
    assert stale.status_code == 409 and stale.json()["error"]["code"] == "lease_lost"
    assert user.get(f"/api/v1/tasks/{task_id}")["state"] == "leased"
    body["lease_token"] = spec["lease_token"]
    body["result"] = {"content": "real"}
    for _ in range(2):  # the second identical upload is a no-op
        reply = worker.post(f"{base}/tasks/{task_id}/result", json=body, timeout=10)
        assert reply.status_code == 200 and reply.json()["state"] == "completed"
    assert user.get(f"/api/v1/tasks/{task_id}/result")["result"]["content"] == "real"


def test_sigterm_drains_running_and_releases_unstarted(cluster: Cluster) -> None:
    user = cluster.user()
    key = cluster.key_file("alice")
    first, health = cluster.supervisor(
        key, "--cpu-procs", "1", "--prefetch", "2", "--worker-id", "first"
    )
    ids = [submit_noop(user, sleep_s=2) for _ in range(3)]
    wait_for(
        lambda: (
            len(status(health)["tasks"]) == 3
            and any(t["stage"] == "running" for t in status(health)["tasks"])
        ),
        30,
        "3 held",
    )
    running = next(t["task_id"] for t in status(health)["tasks"] if t["stage"] == "running")
    first.signal(signal.SIGTERM)
    # the unstarted two go back to the queue at once, without an attempt counted
    wait_for(
        lambda: sum(t["state"] == "queued" for t in _states(user, ids).values()) == 2, 10, "release"
    )
    assert first.proc.wait(timeout=30) == 0
    assert user.get(f"/api/v1/tasks/{running}")["state"] == "completed"
    cluster.supervisor(key, "--cpu-procs", "1", "--worker-id", "second")
    wait_for(lambda: _all_done(user, ids), 60, "all done")
    tasks = _states(user, ids)
    assert all(t["state"] == "completed" and t["attempt"] == 1 for t in tasks.values())


def test_server_down_at_start_and_mid_run(cluster: Cluster) -> None:
    user = cluster.user()
    key = cluster.key_file("alice")
    cluster.server.stop()
    proc, health = cluster.supervisor(key, "--cpu-procs", "1", wait_ready=False)
    wait_for(lambda: _get(health, "/health") == 200, 30, "health up")
    time.sleep(1.5)
    assert _get(health, "/ready") == 503  # not registered: the server is down
    cluster.server = start_server(cluster.root / "server", cluster.port, *cluster.server_args)
    wait_for(lambda: _get(health, "/ready") == 200, 60, "ready after the server came back")
    assert user.wait(submit_noop(user), 30)["state"] == "completed"
    cluster.restart_server()  # down mid-run (SIGTERM), up again on the same data dir
    assert user.wait(submit_noop(user), 60)["state"] == "completed"
    assert proc.proc.poll() is None


def test_bad_api_key_is_refused_with_a_clear_log_line(cluster: Cluster, tmp_path: Path) -> None:
    bogus = "mrg_000000000000_" + "x" * 43
    key_file = tmp_path / "bogus.key"
    key_file.write_text(bogus)
    reply = requests.get(
        f"{cluster.url}/api/v1/workers/test",
        headers={"Authorization": f"Bearer {bogus}"},
        timeout=5,
    )
    assert reply.status_code == 401
    proc, _ = cluster.supervisor(key_file, "--cpu-procs", "1", wait_ready=False)
    assert proc.proc.wait(timeout=60) == 2
    messages = [line["message"] for line in log_lines(proc)]
    assert any("refused this worker's API key" in m for m in messages)
    assert bogus not in proc.log()


def test_a_users_worker_never_sees_another_users_task(cluster: Cluster) -> None:
    alice, bob = cluster.user("alice"), cluster.user("bob")
    cluster.supervisor(cluster.key_file("alice"), "--cpu-procs", "1")
    bobs = submit_noop(bob)
    alices = submit_noop(alice)
    assert alice.wait(alices, 30)["state"] == "completed"
    time.sleep(1.0)
    assert bob.get(f"/api/v1/tasks/{bobs}")["state"] == "queued"
    assert (
        requests.get(
            f"{cluster.url}/api/v1/tasks/{bobs}",
            timeout=5,
            headers={"Authorization": alice.session.headers["Authorization"]},
        ).status_code
        == 404
    )
    cluster.supervisor(cluster.key_file("ops", pool=True), "--cpu-procs", "1")
    assert bob.wait(bobs, 30)["state"] == "completed"


def _get(port: int, path: str) -> int:
    try:
        return requests.get(f"http://127.0.0.1:{port}{path}", timeout=2).status_code
    except requests.RequestException:
        return 0
