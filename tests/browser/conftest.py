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
from pathlib import Path
from typing import Any

import pytest
from browserkit import ARTIFACTS, CHROMIUM, Dashboard, whisper_args
from harness import LEASE_TTL_S

from morag_worker.cli.api import Api
from morag_worker.cli.local import free_port, start_server


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


@pytest.fixture(scope="module")
def dash(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    root = tmp_path_factory.mktemp("dashboard")
    port = free_port()
    server = start_server(
        root / "server", port, "--lease-ttl", LEASE_TTL_S, "--retry-backoff", "0.2", "--no-index"
    )
    url = f"http://127.0.0.1:{port}"
    admin_key = (root / "server" / "admin.key").read_text().strip()
    board = Dashboard(root, url, admin_key, server, supervisor_args=whisper_args())
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
