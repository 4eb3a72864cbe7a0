"""Real server and supervisor processes, restartable where clients look for them."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import requests

from chaoskit.common import FIXTURES, ROOT
from morag_worker.cli.local import Proc, free_port, start_server, wait_http


def _child_env() -> dict[str, str]:
    path = os.pathsep.join(
        p for p in (str(FIXTURES), str(ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    return {"PYTHONPATH": path, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "DO_NOT_TRACK": "1"}


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class Server:
    """A real morag-server on a fixed port (so that it restarts where clients look)."""

    def __init__(self, root: Path, args: tuple[str, ...], data_dir: Path | None = None) -> None:
        self.logs = root
        self.port = free_port()
        self.args = args
        self.data_dir = data_dir or root / "data"
        self.proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = start_server(
            self.logs, self.port, "--data-dir", str(self.data_dir), *self.args, env=_child_env()
        )

    def kill9(self) -> int:
        assert self.proc is not None
        pid = self.proc.pid
        os.kill(pid, signal.SIGKILL)
        self.proc.proc.wait(timeout=30)
        self.proc.kill()  # anything it started goes with it
        return pid

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(timeout_s=20)


class Supervisor:
    """A real morag-supervisor with the fault task types, restartable on the same
    worker id and health port."""

    def __init__(self, root: Path, name: str, url: str, key_file: Path, *args: str) -> None:
        self.name = name
        self.url = url
        self.key_file = key_file
        self.health = free_port()
        self.args = args
        self.log_path = root / f"supervisor-{name}.log"
        self.proc: Proc | None = None
        self._offset = 0

    def start(self, wait_ready: bool = True) -> None:
        args = [
            sys.executable,
            "-m",
            "morag_worker.cli.supervisor",
            "--server-url",
            self.url,
            "--api-key-file",
            str(self.key_file),
            "--worker-id",
            f"chaos-{self.name}",
            "--health-port",
            str(self.health),
            "--health-host",
            "127.0.0.1",
            "--threads-per-proc",
            "1",
            "--plugin",
            "fault_processors",
            *self.args,
        ]
        self.proc = Proc(args, self.log_path, {"MORAG_LOG_FORMAT": "json", **_child_env()})
        if wait_ready:
            wait_http(f"http://127.0.0.1:{self.health}/ready", 180, self.proc.proc)

    def get(self, path: str) -> Any:
        return requests.get(f"http://127.0.0.1:{self.health}{path}", timeout=5)

    def children(self) -> list[dict[str, Any]]:
        try:
            return list(self.get("/status").json()["children"])
        except (requests.RequestException, ValueError, KeyError):
            return []

    def metric(self, name: str) -> float:
        from prometheus_client.parser import text_string_to_metric_families

        try:
            text = self.get("/metrics").text
        except requests.RequestException:
            return 0.0
        return sum(
            s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == name
        )

    def kill9(self) -> int:
        """SIGKILL to the supervisor alone (its children must notice on their own)."""
        assert self.proc is not None
        pid = self.proc.pid
        os.kill(pid, signal.SIGKILL)
        self.proc.proc.wait(timeout=30)
        return pid

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.signal(sig)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(timeout_s=30)

    def messages(self) -> list[str]:
        """Log messages written since the last call."""
        try:
            with self.log_path.open("rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
        except OSError:
            return []
        end = data.rfind(b"\n") + 1
        self._offset += end
        found = []
        for line in data[:end].splitlines():
            with contextlib.suppress(ValueError):
                found.append(str(json.loads(line).get("message", "")))
        return found
