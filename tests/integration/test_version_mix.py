"""Rolling upgrades: a release-0.1.0 supervisor with today's server, and the other way.

The released code is taken from the repository's own history (the commit tagged
v0.1.0) and run as it shipped, in real processes beside today's. On a shallow clone
without that commit the tests skip, saying so.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import wait_for

from morag_worker.cli.api import Api
from morag_worker.cli.local import Proc, free_port, start_server, start_supervisor

#: The commit release 0.1.0 was cut from.
RELEASE_COMMIT = "4a31b00"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def release_code(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", RELEASE_COMMIT, "morag_worker"],
        capture_output=True,
    )
    if archive.returncode != 0:
        pytest.skip(f"release commit {RELEASE_COMMIT} is not in this clone's history")
    root = tmp_path_factory.mktemp("release-0.1.0")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(root, filter="data")
    yield root


def _released(code: Path) -> dict[str, str]:
    """The environment that runs the released code: it first on the path, and no current
    directory in front of it (``python -m`` would put this checkout there)."""
    return {"PYTHONPATH": str(code), "PYTHONSAFEPATH": "1"}


def _key(api: Api, user: str, role: str) -> str:
    return str(api.post_json("/api/v1/keys", {"user_id": user, "role": role})["key"])


def _cluster(tmp_path: Path, server_env: dict[str, str] | None) -> tuple[Proc, str, Api]:
    port = free_port()
    server = start_server(
        tmp_path / "server", port, "--no-index", "--lease-ttl", "5", env=server_env
    )
    url = f"http://127.0.0.1:{port}"
    admin = Api(url, (tmp_path / "server" / "admin.key").read_text().strip())
    return server, url, admin


def test_a_release_supervisor_works_with_todays_server(tmp_path: Path, release_code: Path) -> None:
    server, url, admin = _cluster(tmp_path, None)
    old = _released(release_code)
    key_file = tmp_path / "worker.key"
    key_file.write_text(_key(admin, "alice", "worker"))
    user = Api(url, _key(admin, "alice", "user"))
    try:
        for run in range(2):  # a restart right after the first run is not refused
            sup = start_supervisor(
                url,
                key_file,
                tmp_path / f"old-{run}.log",
                free_port(),
                "--cpu-procs",
                "1",
                env=old,
            )
            try:
                task_id = user.post_json("/api/v1/tasks", {"task_type": "noop"})["task_id"]
                assert user.wait(task_id, 60)["state"] == "completed"
            finally:
                assert sup.stop() == 0
        workers = admin.get("/api/v1/workers")["workers"]
        assert [(w["version"], w["protocol_version"]) for w in workers] in ([], [("0.1.0", 1)])
    finally:
        server.stop()


def test_todays_supervisor_works_with_a_release_server(tmp_path: Path, release_code: Path) -> None:
    server, url, admin = _cluster(tmp_path, _released(release_code))
    key_file = tmp_path / "worker.key"
    key_file.write_text(_key(admin, "alice", "worker"))
    user = Api(url, _key(admin, "alice", "user"))
    try:
        health = free_port()
        sup = start_supervisor(url, key_file, tmp_path / "new.log", health, "--cpu-procs", "1")
        try:
            ids = [
                user.post_json("/api/v1/tasks", {"task_type": "noop", "parameters": {}})["task_id"]
                for _ in range(3)
            ]
            for task_id in ids:
                assert user.wait(task_id, 60)["state"] == "completed"
            assert "server 0.1.0, protocol 1" in sup.log()
        finally:
            assert sup.stop() == 0
        wait_for(lambda: admin.get("/api/v1/workers")["workers"] == [], 10, "unregistered")
    finally:
        server.stop()
