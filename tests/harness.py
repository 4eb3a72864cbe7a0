"""Test harness: real processes on 127.0.0.1: a morag-server and morag-supervisors, on free ports.

Nothing here is a double: the server is the real ``morag-server`` (SQLite in a temp dir),
supervisors are real ``morag-supervisor`` processes with spawned children, and every
call goes over HTTP.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from morag_worker.cli.api import Api
from morag_worker.cli.local import Proc, free_port, start_server, start_supervisor

#: Short leases so that crash tests see expiry within seconds.
LEASE_TTL_S = "3"


@dataclass
class Cluster:
    root: Path
    port: int
    server: Proc
    admin: Api
    supervisors: list[Proc] = field(default_factory=list)
    server_args: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def key(self, user: str, role: str, pool: bool = False) -> str:
        return str(
            self.admin.post_json("/api/v1/keys", {"user_id": user, "role": role, "pool": pool})[
                "key"
            ]
        )

    def key_file(self, user: str, role: str = "worker", pool: bool = False) -> Path:
        path = self.root / f"{user}-{role}-{time.monotonic_ns()}.key"
        path.write_text(self.key(user, role, pool))
        return path

    def user(self, user: str = "alice") -> Api:
        return Api(self.url, self.key(user, "user"))

    def supervisor(
        self, key_file: Path, *args: str, wait_ready: bool = True, env: dict[str, str] | None = None
    ) -> tuple[Proc, int]:
        health = free_port()
        log = self.root / f"supervisor-{len(self.supervisors)}.log"
        proc = start_supervisor(
            self.url,
            key_file,
            log,
            health,
            "--threads-per-proc",
            "1",
            *args,
            env=env,
            wait_ready=wait_ready,
        )
        self.supervisors.append(proc)
        return proc, health

    def restart_server(self) -> None:
        self.server.stop()
        self.server = start_server(self.root / "server", self.port, *self.server_args)


@pytest.fixture
def cluster_factory(tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    made: list[Cluster] = []

    def make(*server_args: str, index: bool = False) -> Cluster:
        """A server with short leases; ``index`` turns on embedding into embedded Qdrant."""
        port = free_port()
        no_index = () if index else ("--no-index",)
        args = ("--lease-ttl", LEASE_TTL_S, "--retry-backoff", "0.2", *no_index, *server_args)
        server = start_server(tmp_path / "server", port, *args)
        admin = Api(
            f"http://127.0.0.1:{port}", (tmp_path / "server" / "admin.key").read_text().strip()
        )
        cluster = Cluster(tmp_path, port, server, admin, server_args=args)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        for proc in cluster.supervisors:
            proc.stop(timeout_s=20)
        cluster.server.stop()


@pytest.fixture
def cluster(cluster_factory: Callable[..., Cluster]) -> Cluster:
    return cluster_factory()


PG_URL = os.environ.get("MORAG_TEST_POSTGRES_URL", "postgresql://127.0.0.1:5432/test")


@contextlib.contextmanager
def postgres_schema() -> Iterator[str]:
    """A fresh schema on the test PostgreSQL, dropped afterwards; yields its URL.

    Without a reachable server the test is skipped with the reason, except under CI,
    where .ci/run starts PostgreSQL and its absence is a failure.
    """
    import psycopg

    try:
        admin = psycopg.connect(PG_URL, autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}: {exc}")
    schema = "t_" + secrets.token_hex(6)
    admin.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()


def wait_for(predicate: Callable[[], Any], timeout_s: float = 60.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what or predicate}")


def status(health_port: int) -> dict[str, Any]:
    reply: dict[str, Any] = requests.get(f"http://127.0.0.1:{health_port}/status", timeout=5).json()
    return reply


def submit_noop(api: Api, **params: Any) -> str:
    body = {"task_type": "noop", "parameters": params}
    return str(api.post_json("/api/v1/tasks", body)["task_id"])


def log_lines(proc: Proc) -> list[dict[str, Any]]:
    lines = []
    for line in proc.log().splitlines():
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return lines
