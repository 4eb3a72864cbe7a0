"""Run a server and a supervisor as child processes on this machine.

Used by ``morag demo`` and by the integration tests: both want real processes on
127.0.0.1 with free ports, started and stopped the way an operator would.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import requests


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(
    url: str,
    timeout_s: float,
    proc: subprocess.Popen[bytes] | None = None,
    ok: tuple[int, ...] = (200,),
) -> None:
    """Wait until ``url`` answers with one of ``ok`` (or the process dies)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            if requests.get(url, timeout=2).status_code in ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout_s} s")


class Proc:
    """A child process with its output in a log file."""

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("ab")
        full_env = {**os.environ, **(env or {})}
        self.proc = subprocess.Popen(
            args, stdout=self._log, stderr=subprocess.STDOUT, env=full_env, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, wait, then SIGKILL the whole session; returns the exit code."""
        self.signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.proc.wait(timeout=10)
        self._log.close()
        return code

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")


def start_server(
    data_dir: Path,
    port: int,
    *extra: str,
    env: dict[str, str] | None = None,
    timeout_s: float = 60.0,
) -> Proc:
    data_dir.mkdir(parents=True, exist_ok=True)
    proc = Proc(
        [
            sys.executable,
            "-m",
            "morag_worker.cli.server",
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
            *extra,
        ],
        data_dir / "server.log",
        env,
    )
    wait_http(f"http://127.0.0.1:{port}/health", timeout_s, proc.proc)
    return proc


def start_supervisor(
    server_url: str,
    key_file: Path,
    log_path: Path,
    health_port: int,
    *extra: str,
    env: dict[str, str] | None = None,
    wait_ready: bool = True,
    timeout_s: float = 120.0,
) -> Proc:
    args = [
        sys.executable,
        "-m",
        "morag_worker.cli.supervisor",
        "--server-url",
        server_url,
        "--api-key-file",
        str(key_file),
        "--health-port",
        str(health_port),
        "--health-host",
        "127.0.0.1",
        *extra,
    ]
    proc = Proc(args, log_path, {"MORAG_LOG_FORMAT": "json", **(env or {})})
    if wait_ready:
        wait_http(f"http://127.0.0.1:{health_port}/ready", timeout_s, proc.proc)
    return proc
