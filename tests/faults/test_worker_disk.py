"""A full disk on the worker is the worker's problem, never the task's.

The work dir is a real, small tmpfs mounted for the test (root can mount one here and in
CI; elsewhere the tests skip, saying why). A filler file takes the space away and gives
it back, the way a log or a core dump does on a real host.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from faultkit import SERVER_ARGS, metrics, ready, start, task
from harness import Cluster, log_lines, wait_for

from morag_worker.cli.api import Api

_MIB = 1 << 20


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "work"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _fill(disk: Path, leave_bytes: int) -> Path:
    """Fill the disk until about ``leave_bytes`` are free."""
    filler = disk / "filler"
    with filler.open("wb") as out, contextlib.suppress(OSError):
        while os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize > leave_bytes:
            out.write(b"\0" * (64 * 1024))
            out.flush()
    return filler


def _submit_file(api: Api, size: int) -> str:
    reply = api.session.post(
        f"{api.base}/api/v1/tasks",
        data={"task_type": "noop", "parameters": "{}"},
        files={"files": ("big.bin", os.urandom(size), "application/octet-stream")},
        timeout=30,
    )
    assert reply.status_code == 201, reply.text
    return str(reply.json()["task_id"])


def test_a_full_work_dir_gives_tasks_back_unattempted_and_pauses_leasing(
    cluster_factory: Callable[..., Cluster], small_disk: Path
) -> None:
    cluster = cluster_factory(*SERVER_ARGS)
    user = cluster.user()
    proc, health = start(
        cluster,
        cluster.key_file("alice"),
        "--cpu-procs",
        "1",
        "--work-dir",
        str(small_disk),
        "--min-free-disk",
        "0",
    )
    filler = _fill(small_disk, 256 * 1024)
    task_id = _submit_file(user, 2 * _MIB)  # does not fit: the download hits ENOSPC
    wait_for(lambda: ready(health)[0] == 503, 30, "not ready while the disk is full")
    _, body = ready(health)
    assert any("not leasing" in r for r in body["reasons"]), body
    assert metrics(health)[("morag_worker_leasing_paused", ())] == 1
    assert metrics(health)[("morag_worker_infrastructure_failures_total", ())] >= 1
    info = task(user, task_id)
    assert info["state"] == "queued" and info["attempt"] == 0  # given back, no attempt used
    status = requests.get(f"http://127.0.0.1:{health}/status", timeout=5).json()
    assert status["leasing_paused"] and status["disk"]["work_dir"] == str(small_disk)
    logged = [line["message"] for line in log_lines(proc)]
    assert any("goes back to the server" in m for m in logged)

    filler.unlink()  # space comes back: leasing resumes without a restart
    done = user.wait(task_id, 90)
    assert done["state"] == "completed" and done["attempt"] == 1
    assert ready(health)[0] == 200
    assert proc.proc.poll() is None


def test_leasing_stops_under_the_free_space_floor(
    cluster_factory: Callable[..., Cluster], small_disk: Path
) -> None:
    cluster = cluster_factory(*SERVER_ARGS)
    user = cluster.user()
    filler = _fill(small_disk, 2 * _MIB)
    proc, health = start(
        cluster,
        cluster.key_file("alice"),
        "--cpu-procs",
        "1",
        "--work-dir",
        str(small_disk),
        "--min-free-disk",
        "4M",
        wait_ready=False,
    )
    wait_for(lambda: _answers(health), 60, "health endpoint up")
    wait_for(lambda: "--min-free-disk" in " ".join(ready(health)[1]["reasons"]), 30, "floor")
    task_id = user.post_json("/api/v1/tasks", {"task_type": "noop", "parameters": {}})["task_id"]
    wait_for(lambda: _logged(proc, "not leasing"), 30, "the pause is logged")
    assert task(user, task_id)["attempt"] == 0  # never leased while under the floor
    filler.unlink()
    assert user.wait(task_id, 60)["state"] == "completed"
    assert ready(health)[0] == 200


def _answers(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _logged(proc: object, text: str) -> bool:
    return any(text in line["message"] for line in log_lines(proc))  # type: ignore[arg-type]
