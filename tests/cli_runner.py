"""Running the console scripts as a user would: a real process, flags and environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from harness import Cluster


def run(
    program: str, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``program`` (morag, server, supervisor) run with ``args``; no server settings from
    this test process leak in unless ``env`` gives them."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MORAG_") and k not in ("LOG_LEVEL", "WORKER_TYPE")
    }
    return subprocess.run(
        [sys.executable, "-m", f"morag_worker.cli.{program}", *args],
        env={**clean, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
    )


def morag(
    cluster: Cluster | None,
    *args: str,
    key: str = "",
    key_file: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``morag ARGS`` against ``cluster`` (server URL and key from the environment)."""
    settings = {"MORAG_SERVER_URL": cluster.url} if cluster else {}
    if key:
        settings["MORAG_API_KEY"] = key
    if key_file:
        settings["MORAG_API_KEY_FILE"] = str(key_file)
    return run("morag", *args, env={**settings, **(env or {})})
