"""What an operator reads first: one line per program saying what it is and uses."""

from __future__ import annotations

import json
from pathlib import Path

import requests
from harness import Cluster, log_lines, submit_noop, wait_for


def _server_lines(cluster: Cluster) -> list[dict]:
    path = Path(cluster.server.log_path)
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def test_the_server_says_where_it_serves_and_what_it_uses(cluster: Cluster) -> None:
    line = next(
        entry["message"]
        for entry in _server_lines(cluster)
        if entry["message"].startswith("morag-server ")
    )
    assert f"serving http://127.0.0.1:{cluster.port}" in line
    assert "database sqlite:///" in line and "morag.db" in line
    assert f"data dir {cluster.root / 'server'}" in line
    assert "search off (--no-index)" in line  # the test cluster runs without indexing
    health = requests.get(f"{cluster.url}/health", timeout=5).json()
    assert health["search"] == "off" and health["status"] == "ok"


def test_the_supervisor_names_each_child_and_says_when_it_is_ready(cluster: Cluster) -> None:
    proc, _ = cluster.supervisor(cluster.key_file("alice"), "--cpu-procs", "2")
    user = cluster.user()
    assert user.wait(submit_noop(user), 60)["state"] == "completed"
    messages = [line["message"] for line in log_lines(proc)]
    children = [m for m in messages if m.startswith("child cpu") and "task types" in m]
    assert len(children) == 2 and all("CPU, cores" in m and "noop" in m for m in children)
    ready = wait_for(lambda: [m for m in messages if m.startswith("ready: ")], 5, "ready line")
    assert "2 children serving" in ready[0] or "of 2 children serving" in ready[0]
    assert proc.stop() == 0
    after = [json.loads(x) for x in Path(proc.log_path).read_text().splitlines() if x[:1] == "{"]
    levels = {line["message"]: line["level"] for line in after}
    planned = [m for m in levels if m.startswith("child cpu") and "(exit)" in m]
    assert planned and all(levels[m] == "INFO" for m in planned)  # a planned exit is no alarm
