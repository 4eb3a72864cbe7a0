"""Crash loops, CUDA errors and quarantine, with real children.

The GPU cases run the supervisor through ``fake_gpu_supervisor.py``: NVML is replaced by
FakeNvml, a test double, because the test machines have no GPU. Everything else (children
on "GPU" slots, signals, HTTP, the server) is real.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from faultkit import SERVER_ARGS, metrics, ready, restarts, start, submit, task
from harness import Cluster, log_lines, status, submit_noop, wait_for


def _quarantined(health: int, gpu: str) -> float:
    return metrics(health).get(("morag_worker_gpu_quarantined", (("gpu", gpu),)), -1.0)


def test_crash_looping_slot_backs_off_then_quarantines_its_gpu_others_keep_working(
    cluster_factory: Callable[..., Cluster],
) -> None:
    cluster = cluster_factory(*SERVER_ARGS)
    user = cluster.user()
    proc, health = start(
        cluster,
        cluster.key_file("alice"),
        "--gpus",
        "0,1",
        fake_gpus=2,
        env={"FAULT_BOOT_FAIL": "morag-gpu1"},
    )
    # While gpu1 fails to boot over and over, gpu0 keeps working.
    ids = [submit_noop(user, echo=f"n{n}") for n in range(5)]
    for task_id in ids:
        assert user.wait(task_id, 60)["state"] == "completed"
    wait_for(lambda: ready(health)[1]["quarantined_gpus"], 90, "GPU 1 quarantined")
    code, body = ready(health)
    assert code == 200 and body["healthy_children"] == ["gpu0"]
    assert list(body["quarantined_gpus"]) == ["1"]
    children = {c["name"]: c for c in status(health)["children"]}
    assert children["gpu1"]["state"] == "quarantined"
    assert children["gpu1"]["crashes"] == 5  # the crash budget, spent with backoff
    assert children["gpu0"]["state"] in ("idle", "busy")
    devices = {d["gpu"]: d for d in status(health)["devices"]}
    assert devices[1]["quarantined"] and not devices[0]["quarantined"]
    assert restarts(health, "boot") == 5
    assert _quarantined(health, "1") == 1 and _quarantined(health, "0") == 0
    assert metrics(health)[("morag_worker_capacity", ())] == 1
    # The server's worker view (the dashboard's Workers page) says so too.
    reported = wait_for(
        lambda: (cluster.admin.get("/api/v1/workers")["workers"][0]["status"] or {}).get(
            "quarantined_gpus"
        ),
        30,
        "the quarantine in the supervisor's status report",
    )
    assert list(reported) == ["1"]
    [worker] = cluster.admin.get("/api/v1/workers")["workers"]
    states = {c["name"]: (c["state"], c["crashes"]) for c in worker["status"]["children"]}
    assert states["gpu1"] == ("quarantined", 5) and states["gpu0"][0] in ("idle", "busy")
    # The quarantined slot stays down; work still flows.
    assert user.wait(submit_noop(user), 30)["state"] == "completed"
    assert status(health)["children"][1]["state"] == "quarantined"
    assert proc.proc.poll() is None


def test_crash_cuda_oom_and_device_fault(
    cluster_factory: Callable[..., Cluster], tmp_path: Path
) -> None:
    cluster = cluster_factory(*SERVER_ARGS)
    user = cluster.user()
    proc, health = start(cluster, cluster.key_file("alice"), "--gpus", "0,1", fake_gpus=2)

    # A child that dies mid-task: the task is retried; the crash is counted.
    crash = submit(user, "crash", once=str(tmp_path / "crash-once"))
    info = user.wait(crash, 60)
    assert info["state"] == "completed" and info["attempt"] == 2
    assert restarts(health, "crash") == 1

    # CUDA out of memory: the child is replaced and the task retried on a fresh child.
    marker = tmp_path / "oom-once"
    oom = submit(
        user, "cudaerr", message="CUDA out of memory. Tried to allocate 2 GiB", once=str(marker)
    )
    info = user.wait(oom, 60)
    assert info["state"] == "completed" and info["attempt"] == 2
    retry_pid = user.get(f"/api/v1/tasks/{oom}/result")["result"]["metadata"]["pid"]
    assert retry_pid != int(marker.read_text())
    wait_for(lambda: restarts(health, "cuda_oom") == 1, 30, "cuda_oom restart")
    assert not ready(health)[1]["quarantined_gpus"]

    # A hardware fault: that GPU is quarantined at once; the retry runs on the other.
    marker = tmp_path / "ecc-once"
    ecc = submit(
        user, "cudaerr", message="CUDA error: uncorrectable ECC error encountered", once=str(marker)
    )
    info = user.wait(ecc, 60)
    assert info["state"] == "completed" and info["attempt"] == 2
    bad = wait_for(lambda: ready(health)[1]["quarantined_gpus"], 30, "GPU quarantined")
    assert len(bad) == 1 and "device fault" in next(iter(bad.values()))
    (gpu,) = bad
    assert _quarantined(health, gpu) == 1
    assert restarts(health, "cuda_fatal") == 1
    children = {c["gpu"]: c for c in status(health)["children"]}
    wait_for(
        lambda: (
            {c["gpu"]: c["state"] for c in status(health)["children"]}[int(gpu)] == "quarantined"
        ),
        30,
        "slot down",
    )
    assert children[1 - int(gpu)]["state"] in ("idle", "busy")
    assert ready(health)[0] == 200
    assert user.wait(submit_noop(user), 30)["state"] == "completed"
    assert task(user, ecc)["worker_id"]
    assert proc.proc.poll() is None


def test_vram_admission_holds_gpu_types_back_until_a_gpu_has_room(
    cluster_factory: Callable[..., Cluster], tmp_path: Path
) -> None:
    cluster = cluster_factory(*SERVER_ARGS)
    user = cluster.user()
    used = tmp_path / "gpu-used"
    used.write_text(str(15 * 2**30 + 2**29))  # 0.5 GiB free of 16: no room for Whisper
    proc, health = start(
        cluster,
        cluster.key_file("alice"),
        "--gpus",
        "0",
        "--poll-interval",
        "1",
        fake_gpus=1,
        env={"FAKE_GPU_USED_FILE": str(used)},
    )
    audio = user.submit_file(used, "audio", {})
    assert user.wait(submit_noop(user), 30)["state"] == "completed"  # other types flow
    assert task(user, audio)["state"] == "queued"
    assert status(health)["devices"][0]["memory_used_bytes"] > 15 * 2**30
    used.write_text(str(2**30))  # the GPU empties: audio is leased (and runs)
    wait_for(lambda: task(user, audio)["state"] != "queued", 30, "audio leased")
    assert proc.proc.poll() is None


def test_tasks_only_a_quarantined_gpu_could_run_go_back_to_the_server(
    cluster_factory: Callable[..., Cluster], tmp_path: Path
) -> None:
    cluster = cluster_factory(*SERVER_ARGS)
    user = cluster.user()
    proc, health = start(
        cluster,
        cluster.key_file("alice"),
        "--gpus",
        "0",
        "--cpu-procs",
        "1",
        "--poll-interval",
        "1",
        fake_gpus=1,
        env={"FAULT_BOOT_FAIL": "morag-gpu0"},
    )
    sample = tmp_path / "sample.wav"
    sample.write_bytes(b"RIFF")
    audio = user.submit_file(sample, "audio", {})
    wait_for(lambda: ready(health)[1]["quarantined_gpus"], 90, "GPU 0 quarantined")
    # Held while GPU 0 might still boot, released once it cannot: no attempt is used.
    # (A lease call already waiting at the server may take it once more; it comes back.)
    wait_for(
        lambda: not status(health)["tasks"] and task(user, audio)["state"] == "queued",
        30,
        "audio task released",
    )
    assert task(user, audio)["attempt"] <= 1
    released = {
        line["task_id"]
        for line in log_lines(proc)
        if line["message"].startswith("released: no child on this worker can run it")
    }
    assert released == {audio}
    assert user.wait(submit_noop(user), 30)["state"] == "completed"  # the CPU child works
    wait_for(lambda: task(user, audio)["state"] == "queued", 30, "audio left queued")
    assert ready(health)[0] == 200
    assert proc.proc.poll() is None
