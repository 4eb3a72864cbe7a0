"""The server's data on disk, through a real morag-server: private permissions, durable
SQLite commits, no key written by a server that cannot serve, and a full disk (a real
one: a small tmpfs mounted for the test) answered with 507 and reported by /health,
with no partial file left and recovery without a restart."""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import rawhttp
import requests
from harness import Cluster

from morag_worker.cli.api import Api
from morag_worker.cli.local import free_port, start_server

SERVER = [sys.executable, "-m", "morag_worker.cli.server"]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _modes(data: Path) -> dict[str, int]:
    names = ["", "morag.db", "morag.db-wal", "morag.db-shm", "admin.key", "files", "files/tmp"]
    return {name or ".": _mode(data / name) for name in names}


PRIVATE = {
    ".": 0o700,
    "morag.db": 0o600,
    "morag.db-wal": 0o600,
    "morag.db-shm": 0o600,
    "admin.key": 0o600,
    "files": 0o700,
    "files/tmp": 0o700,
}


def test_data_dir_and_database_files_are_private(cluster: Cluster) -> None:
    data = cluster.root / "server"
    old_umask = os.umask(0o022)
    os.umask(old_umask)
    assert old_umask & 0o077 != 0o077  # the test runs with a permissive umask
    alice = cluster.user()
    reply = requests.post(
        f"{cluster.url}/api/v1/tasks",
        headers={"Authorization": alice.session.headers["Authorization"]},
        data={"task_type": "document"},
        files=[("files", ("p.txt", b"private"))],
        timeout=10,
    )
    file_id = alice.get(f"/api/v1/tasks/{reply.json()['task_id']}")["input_files"][0]["file_id"]
    assert _modes(data) == PRIVATE
    assert _mode(data / "files" / file_id[:2] / file_id) == 0o600
    # a data dir left open by an older release is closed at the next start
    os.chmod(data, 0o755)
    for name in ("morag.db", "morag.db-wal", "morag.db-shm"):
        os.chmod(data / name, 0o644)
    cluster.restart_server()
    assert _modes(data) == PRIVATE


def test_a_taken_port_exits_2_and_writes_no_key(tmp_path: Path) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    data = tmp_path / "data"
    try:
        done = subprocess.run(
            [*SERVER, "--data-dir", str(data), "--port", str(port), "--no-index"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        holder.close()
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"127.0.0.1:{port}" in done.stderr and "in use" in done.stderr
    assert not (data / "admin.key").exists()
    assert not data.exists() or not (data / "morag.db").exists()


def test_sqlite_commits_are_durable_by_default(cluster_factory) -> None:
    default: Cluster = cluster_factory()
    assert requests.get(f"{default.url}/health", timeout=5).json()["sqlite_synchronous"] == "full"
    default.server.stop()
    fast: Cluster = cluster_factory("--sqlite-synchronous", "normal")
    assert requests.get(f"{fast.url}/health", timeout=5).json()["sqlite_synchronous"] == "normal"
    wrong = subprocess.run(
        [*SERVER, "--sqlite-synchronous", "off"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert wrong.returncode == 2 and "--sqlite-synchronous" in wrong.stderr


@contextlib.contextmanager
def _small_disk(path: Path, size: str) -> Iterator[Path]:
    """A real, small filesystem (tmpfs) at ``path``; needs root, as on CI."""
    path.mkdir(parents=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount a tmpfs for the full-disk test: {done.stderr}")
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(path: Path) -> None:
    """Write until the filesystem refuses: the disk is then really full."""
    with contextlib.suppress(OSError), path.open("wb", buffering=0) as handle:
        for block in (1 << 20, 1 << 12, 1 << 9, 1):
            with contextlib.suppress(OSError):
                while True:
                    handle.write(b"\0" * block)


def _health(url: str) -> dict:
    reply = requests.get(f"{url}/health", timeout=5)
    assert reply.status_code == 200
    return dict(reply.json())


def test_a_full_disk_is_507_reported_by_health_and_recovered_from(tmp_path: Path) -> None:
    with _small_disk(tmp_path / "disk", "24m") as data:
        port = free_port()
        logs = tmp_path / "logs"
        server = start_server(
            logs, port, "--data-dir", str(data), "--no-index", "--min-free-disk-bytes", "1048576"
        )
        try:
            url = f"http://127.0.0.1:{port}"
            admin = Api(url, (data / "admin.key").read_text().strip())
            key = admin.post_json("/api/v1/keys", {"user_id": "alice", "role": "user"})["key"]
            assert _health(url)["status"] == "ok"
            Api(url, key).get("/api/v1/tasks")  # the key's first use is recorded before
            _fill(data / "filler")
            body = rawhttp.multipart(
                [("task_type", None, b"document"), ("files", "big.bin", os.urandom(3 << 20))]
            )
            headers = {
                "Authorization": f"Bearer {key}",
                "Content-Type": "multipart/form-data; boundary=b0undary",
                "Content-Length": str(len(body)),
            }
            for _ in range(3):
                reply = rawhttp.request(port, "POST", "/api/v1/tasks", headers, [body])
                assert reply.status == 507, reply.body[:300]
                error = reply.json()["error"]
                assert error["code"] == "insufficient_storage" and "disk" in error["message"]
                assert list((data / "files" / "tmp").iterdir()) == []
            # database writes: SQLite cannot grow its WAL either
            acknowledged, codes = [], set()
            for _ in range(20):
                reply = requests.post(
                    f"{url}/api/v1/tasks",
                    headers={"Authorization": f"Bearer {key}"},
                    json={"task_type": "noop", "parameters": {"echo": "x" * 20_000}},
                    timeout=10,
                )
                codes.add(reply.status_code)
                assert reply.json()["error" if reply.status_code == 507 else "task_id"]
                if reply.status_code == 201:
                    acknowledged.append(reply.json()["task_id"])
            assert codes <= {201, 507} and 507 in codes, codes
            health = _health(url)
            assert health["status"] == "degraded"
            assert any("disk" in reason for reason in health["problems"]), health
            (data / "filler").unlink()
            reply = rawhttp.request(port, "POST", "/api/v1/tasks", headers, [body])
            assert reply.status == 201, reply.body[:300]
            assert _health(url)["status"] == "ok"
            listed = {t["task_id"] for t in Api(url, key).get("/api/v1/tasks")["tasks"]}
            assert set(acknowledged) <= listed  # nothing acknowledged was lost
            assert list((data / "files" / "tmp").iterdir()) == []
            log = (logs / "server.log").read_text()
            assert "Traceback" not in log and "disk" in log
        finally:
            server.stop()
