"""``morag submit --wait``: a live bar on a terminal, plain lines elsewhere, and a word
when no online worker serves the task's type (real server, real supervisor, a pty)."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import threading
from pathlib import Path

from harness import Cluster, wait_for

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
STEPS = ("--param", "steps=6", "--param", "step_s=0.8")


class Output:
    """A process's combined output, read as it comes."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.text = ""
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:  # EIO: the pty's other side closed
                return
            if not chunk:
                return
            self.text += chunk.decode(errors="replace")


def _wait_cli(cluster: Cluster, key: str, tty: bool) -> tuple[subprocess.Popen[bytes], Output]:
    env = {**os.environ, "MORAG_SERVER_URL": cluster.url, "MORAG_API_KEY": key}
    args = [sys.executable, "-m", "morag_worker.cli.morag", "submit", __file__, "--type", "steps"]
    args += [*STEPS, "--wait", "--timeout", "120"]
    if tty:
        master, slave = pty.openpty()
        proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=env)
        os.close(slave)
        return proc, Output(master)
    read, write = os.pipe()
    proc = subprocess.Popen(args, stdout=write, stderr=write, env=env)
    os.close(write)
    return proc, Output(read)


def _supervise(cluster: Cluster, user: str) -> None:
    path = os.pathsep.join(p for p in (str(FIXTURES), os.environ.get("PYTHONPATH", "")) if p)
    cluster.supervisor(
        cluster.key_file(user),
        "--cpu-procs",
        "1",
        "--plugin",
        "step_processors",
        env={"PYTHONPATH": path},
    )


def test_bar_on_a_terminal_after_saying_nothing_serves_the_type(cluster_factory) -> None:
    cluster = cluster_factory("--extra-task-types", "steps")
    proc, out = _wait_cli(cluster, cluster.key("kim", "user"), tty=True)
    wait_for(lambda: "no online worker serves `steps`" in out.text, 60, "the notice")
    _supervise(cluster, "kim")
    assert proc.wait(timeout=120) == 0, out.text
    out.thread.join(5)
    text = out.text
    assert text.index("no online worker serves `steps`") < text.index("leased")
    assert "\r\x1b[2K" in text  # one line, redrawn
    assert "step " in text and "] " in text and "%  ETA" in text
    assert "[" + "#" * 4 in text  # the bar moved
    assert "completed in" in text and "6 steps done" in text


def test_plain_lines_when_not_a_terminal(cluster_factory) -> None:
    cluster = cluster_factory("--extra-task-types", "steps")
    _supervise(cluster, "lee")
    proc, out = _wait_cli(cluster, cluster.key("lee", "user"), tty=False)
    assert proc.wait(timeout=120) == 0, out.text
    out.thread.join(5)
    assert "\r" not in out.text and "\x1b" not in out.text
    lines = out.text.splitlines()
    task_id = lines[0]
    progress = [ln for ln in lines if ln.startswith(f"{task_id}: leased step")]
    assert len(progress) >= 3, out.text  # one line per stage, not one per poll
    assert len(progress) == len(set(progress))
    assert f"{task_id}: completed in" in out.text and lines[-1] == "6 steps done"
    assert "no online worker" not in out.text
