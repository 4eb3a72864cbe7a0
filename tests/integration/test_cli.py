"""The `morag` CLI against a real server and supervisor; cancellation of a running task."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from harness import Cluster, status, submit_noop, wait_for


def morag(
    cluster: Cluster,
    *args: str,
    key: str = "",
    key_file: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "MORAG_SERVER_URL": cluster.url,
        "MORAG_API_KEY": key,
        "MORAG_API_KEY_FILE": str(key_file or ""),
    }
    return subprocess.run(
        [sys.executable, "-m", "morag_worker.cli.morag", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_keys_submit_wait_status_result(cluster: Cluster, tmp_path: Path) -> None:
    admin_file = cluster.root / "server" / "admin.key"
    created = morag(
        cluster, "keys", "create", "--user", "carol", "--role", "user", key_file=admin_file
    )
    assert created.returncode == 0
    user_key = created.stdout.strip()
    assert created.stdout.count("\n") == 1 and user_key.startswith("mrg_")  # only the key
    worker = morag(
        cluster, "keys", "create", "--user", "carol", "--role", "worker", key_file=admin_file
    )
    (tmp_path / "w.key").write_text(worker.stdout.strip())
    cluster.supervisor(tmp_path / "w.key", "--cpu-procs", "1")

    note = tmp_path / "note.md"
    note.write_text("# Greenhouse\n\nThe tomatoes ripened two weeks early this year.\n")
    submitted = morag(cluster, "submit", str(note), "--type", "document", "--wait", key=user_key)
    assert submitted.returncode == 0, submitted.stderr
    task_id = submitted.stdout.splitlines()[0]
    assert task_id.startswith("t_") and "tomatoes ripened" in submitted.stdout
    assert "completed" in submitted.stderr  # progress lines go to stderr
    info = json.loads(morag(cluster, "status", task_id, key=user_key).stdout)
    assert info["state"] == "completed" and info["input_files"][0]["name"] == "note.md"
    full = json.loads(morag(cluster, "result", task_id, "--json", key=user_key).stdout)
    assert full["result"]["chunks"][0]["heading_path"] == ["Greenhouse"]
    listed = morag(cluster, "keys", "list", key_file=admin_file).stdout
    assert "carol" in listed and user_key not in listed
    refused = morag(cluster, "submit", str(note), "--type", "sing", key=user_key)
    assert refused.returncode == 1 and "task_type" in refused.stderr


def test_cancel_stops_a_running_task_and_frees_its_child(cluster: Cluster) -> None:
    user = cluster.user()
    _, health = cluster.supervisor(cluster.key_file("alice"), "--cpu-procs", "1")
    long = submit_noop(user, sleep_s=600)
    wait_for(lambda: status(health)["children"][0]["task_id"] == long, 30, "running")
    assert user.delete(f"/api/v1/tasks/{long}")["state"] == "cancelled"
    # the next heartbeat carries the cancel; the child drops the task and serves again
    wait_for(lambda: status(health)["children"][0]["task_id"] is None, 30, "child freed")
    assert user.wait(submit_noop(user), 30)["state"] == "completed"
    assert user.get(f"/api/v1/tasks/{long}")["state"] == "cancelled"
