"""Memory limits and deadlines, enforced by a real supervisor on real children."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import requests
from faultkit import SERVER_ARGS, restarts, start, submit, task
from harness import Cluster, log_lines, status, submit_noop, wait_for


def test_memory_hog_recycled_at_soft_limit_killed_at_hard_and_retried(
    cluster_factory: Callable[..., Cluster], tmp_path: Path
) -> None:
    cluster = cluster_factory(*SERVER_ARGS)
    user = cluster.user()
    proc, health = start(
        cluster,
        cluster.key_file("alice"),
        "--cpu-procs",
        "1",
        "--max-memory-per-child",
        "150M,400M",
    )
    first_pid = status(health)["children"][0]["pid"]

    # Over the soft limit: the task completes, then the child is replaced.
    soft = submit(user, "hog", mib=208, hold_s=2)
    assert user.wait(soft, 60)["state"] == "completed"
    wait_for(lambda: restarts(health, "memory") == 1, 30, "soft-limit recycle")
    assert task(user, soft)["attempt"] == 1
    second_pid = wait_for(lambda: status(health)["children"][0]["pid"], 30, "replacement")
    assert second_pid != first_pid

    # Over the hard limit: killed mid-task, the task retried (and not hogging again).
    hard = submit(user, "hog", mib=640, hold_s=3, once=str(tmp_path / "hog-once"))
    info = user.wait(hard, 90)
    assert info["state"] == "completed" and info["attempt"] == 2
    assert restarts(health, "memory") == 2
    killed = [line for line in log_lines(proc) if line["message"].startswith("killing child")]
    assert killed and "hard limit" in killed[0]["message"]
    failed = [line for line in log_lines(proc) if line["message"].startswith("task failed: memory")]
    assert failed and failed[0]["task_id"] == hard

    # The supervisor is unharmed: healthy, ready, and still running tasks.
    assert requests.get(f"http://127.0.0.1:{health}/health", timeout=5).status_code == 200
    assert user.wait(submit_noop(user), 30)["state"] == "completed"
    assert proc.proc.poll() is None


def test_hung_task_is_killed_at_its_deadline(cluster_factory: Callable[..., Cluster]) -> None:
    cluster = cluster_factory(*SERVER_ARGS)
    user = cluster.user()
    proc, health = start(cluster, cluster.key_file("alice"), "--cpu-procs", "1")
    pid = status(health)["children"][0]["pid"]
    hung = submit(user, "hang", timeout_seconds=1)
    info = user.wait(hung, 60)
    assert info["state"] == "failed"  # a timeout is not retried
    assert info["last_error"]["type"] == "timeout"
    assert info["attempt"] == 1
    wait_for(lambda: restarts(health, "timeout") == 1, 30, "restart counted as timeout")
    new_pid = wait_for(lambda: status(health)["children"][0]["pid"], 30, "child restarted")
    assert new_pid != pid

    # Cancelled while hung: the task has left the books, yet its child is still killed
    # after the grace period, counted as a cancel (not a crash, not a timeout).
    hung = submit(user, "hang")
    wait_for(lambda: status(health)["children"][0]["task_id"] == hung, 30, "hang running")
    user.delete(f"/api/v1/tasks/{hung}")
    wait_for(lambda: restarts(health, "cancel") == 1, 30, "hung child killed after cancel")
    assert restarts(health, "crash") == 0
    assert task(user, hung)["state"] == "cancelled"
    assert user.wait(submit_noop(user), 30)["state"] == "completed"
    assert status(health)["children"][0]["crashes"] == 0
    assert proc.proc.poll() is None


def test_gpu_memory_limits_per_child(
    cluster_factory: Callable[..., Cluster], tmp_path: Path
) -> None:
    """GPU memory per child as NVML reports it per PID; here NVML is FakeNvml (a test
    double, no GPU here) fed by the task itself through a file."""
    cluster = cluster_factory(*SERVER_ARGS)
    user = cluster.user()
    vram = tmp_path / "vram.json"
    proc, health = start(
        cluster,
        cluster.key_file("alice"),
        "--gpus",
        "0",
        "--max-gpu-memory-per-child",
        "25%,50%",  # of the fake GPU's 16 GiB: 4 GiB and 8 GiB
        fake_gpus=1,
        env={"FAKE_GPU_PROCS_FILE": str(vram)},
    )
    soft = submit(user, "hog", mib=0, vram_mib=6 * 1024, vram_file=str(vram), hold_s=2.5)
    assert user.wait(soft, 60)["state"] == "completed"
    wait_for(lambda: restarts(health, "memory") == 1, 30, "recycled over the soft GPU limit")
    hard = submit(
        user,
        "hog",
        mib=0,
        vram_mib=10 * 1024,
        vram_file=str(vram),
        hold_s=5,
        once=str(tmp_path / "vram-once"),
    )
    info = user.wait(hard, 60)
    assert info["state"] == "completed" and info["attempt"] == 2
    assert restarts(health, "memory") == 2
    killed = [line["message"] for line in log_lines(proc) if line["message"].startswith("killing")]
    assert any("GPU memory" in message and "hard limit" in message for message in killed)
    assert proc.proc.poll() is None
