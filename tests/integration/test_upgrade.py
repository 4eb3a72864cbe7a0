"""Upgrades that lose nothing: today's server on data written by release 0.1.0.

``tests/fixtures/release-0.1.0`` was recorded by the released server
(``tests/fixtures/gen_release_fixture.py``): a SQLite data dir, and a PostgreSQL dump with
its data dir, each holding keys (one revoked), a completed and indexed document, a failed
task, a cancelled one and a queued one. Every schema or layout change after the release
must pass these tests unchanged: the queued task still runs, results and keys are intact,
search still finds the old document.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from harness import PG_URL, wait_for

from morag_worker.cli.api import Api, ApiFailure
from morag_worker.cli.local import Proc, free_port, start_server, start_supervisor

RELEASE = Path(__file__).parents[1] / "fixtures" / "release-0.1.0"


def _migrate(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "morag_worker.cli.server",
            "migrate",
            "--data-dir",
            str(data_dir),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database (the dump carries its own schema)."""
    name = "morag_up_" + secrets.token_hex(5)
    base = PG_URL.split("?")[0].rsplit("/", 1)[0]
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


def _release_copy(tmp_path: Path, dialect: str, pg_url: str) -> tuple[Path, tuple[str, ...]]:
    data_dir = tmp_path / "data"
    shutil.copytree(RELEASE / dialect, data_dir)
    if dialect == "sqlite":
        return data_dir, ()
    subprocess.run(
        ["psql", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(RELEASE / "postgres-dump.sql"), pg_url],
        check=True,
        capture_output=True,
    )
    return data_dir, ("--database-url", pg_url)


@pytest.mark.slow
@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_release_data_comes_through_an_upgrade(
    dialect: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    pg_url = request.getfixturevalue("pg_database") if dialect == "postgres" else ""
    data_dir, db_args = _release_copy(tmp_path, dialect, pg_url)
    manifest: dict[str, Any] = json.loads((RELEASE / f"{dialect}-manifest.json").read_text())

    check = _migrate(data_dir, "--check", *db_args)
    assert check.returncode == 1, check.stdout + check.stderr
    assert "unversioned (release 0.1.0)" in check.stdout

    port = free_port()
    server = start_server(data_dir, port, "--lease-ttl", "5", *db_args)
    url = f"http://127.0.0.1:{port}"
    try:
        _check_release_data(url, manifest, tmp_path)
    finally:
        server.stop()
    check = _migrate(data_dir, "--check", *db_args)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "up to date" in check.stdout and "0 step(s) pending" in check.stdout


def _check_release_data(url: str, manifest: dict[str, Any], tmp_path: Path) -> None:
    keys, tasks = manifest["keys"], manifest["tasks"]
    alice = Api(url, keys["alice"])
    # keys: every live key still authenticates, the revoked one still does not
    assert Api(url, manifest["admin_key"]).get("/api/v1/keys")["keys"]
    with pytest.raises(ApiFailure, match="HTTP 401"):
        Api(url, keys["revoked"]).get("/api/v1/tasks")
    # results and failures read back as they were stored
    result = alice.get(f"/api/v1/tasks/{tasks['completed']}/result")["result"]
    assert manifest["phrase"] in result["content"] and result["chunks"]
    failed = alice.get(f"/api/v1/tasks/{tasks['failed']}")
    assert failed["state"] == "failed" and failed["last_error"]["retryable"] is False
    assert alice.get(f"/api/v1/tasks/{tasks['cancelled']}")["state"] == "cancelled"
    # search finds the document indexed before the upgrade
    hits = alice.post_json("/api/v1/search", {"query": manifest["query"]})["hits"]
    assert hits and hits[0]["task_id"] == tasks["completed"]
    # the queued task is served by a worker key of the release, and completes
    assert alice.get(f"/api/v1/tasks/{tasks['queued']}")["state"] == "queued"
    key_file = tmp_path / "worker.key"
    key_file.write_text(keys["alice_worker"])
    supervisor = start_supervisor(url, key_file, tmp_path / "sup.log", free_port())
    try:
        info = alice.wait(tasks["queued"], 120)
    finally:
        supervisor.stop()
    assert info["state"] == "completed", info
    content = alice.get(f"/api/v1/tasks/{tasks['queued']}/result")["result"]["content"]
    assert manifest["phrase"] in content


def test_two_replicas_starting_together_migrate_once(pg_database: str, tmp_path: Path) -> None:
    ports = [free_port(), free_port()]
    procs = [
        Proc(
            [
                sys.executable,
                "-m",
                "morag_worker.cli.server",
                "--port",
                str(port),
                "--data-dir",
                str(tmp_path / f"replica{n}"),
                "--database-url",
                pg_database,
                "--no-index",
                "--log-format",
                "json",
            ],
            tmp_path / f"replica{n}.log",
        )
        for n, port in enumerate(ports)
    ]  # both started before either is waited for: they race for the schema
    try:
        for port in ports:
            wait_for(lambda p=port: _healthy(p), 60, f"replica on {port}")
        logs = [proc.log() for proc in procs]
    finally:
        for proc in procs:
            proc.stop()
    with psycopg.connect(pg_database) as conn:
        rows = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    assert [r[0] for r in rows] == list(range(1, len(rows) + 1)) and rows
    appliers = [log for log in logs if "applied migration 0001_initial" in log]
    assert len(appliers) == 1, logs  # one replica applied; the other waited and found it done


def _healthy(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
    except requests.RequestException:
        return False


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_newer_schema_is_refused_naming_both_versions(
    dialect: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    pg_url = request.getfixturevalue("pg_database") if dialect == "postgres" else ""
    data_dir, db_args = _release_copy(tmp_path, dialect, pg_url)
    assert _migrate(data_dir, *db_args).returncode == 0
    target = _schema_versions(data_dir, pg_url)[-1]
    _execute(
        data_dir,
        pg_url,
        "INSERT INTO schema_migrations (version, name, applied_at, server_version) "
        f"VALUES ({target + 1}, 'from_the_future', 0, '9.9.9')",
    )
    server = subprocess.run(
        [
            sys.executable,
            "-m",
            "morag_worker.cli.server",
            "--port",
            str(free_port()),
            "--data-dir",
            str(data_dir),
            *db_args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert server.returncode == 2
    assert f"schema is at version {target + 1} (migrated by morag-server 9.9.9)" in server.stderr
    assert f"knows versions up to {target}" in server.stderr
    assert _migrate(data_dir, "--check", *db_args).returncode == 2


def test_no_auto_migrate_refuses_then_migrate_applies(tmp_path: Path) -> None:
    data_dir, _ = _release_copy(tmp_path, "sqlite", "")
    args = [
        sys.executable,
        "-m",
        "morag_worker.cli.server",
        "--port",
        str(free_port()),
        "--data-dir",
        str(data_dir),
        "--no-auto-migrate",
        "--no-index",
    ]
    refused = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2
    assert "run `morag-server migrate` first" in refused.stderr
    assert _schema_versions(data_dir, "") == []  # nothing was changed
    applied = _migrate(data_dir)
    assert applied.returncode == 0 and "applied migration 0001_initial" in applied.stderr
    assert (
        not (data_dir / "layout.json").exists()
        or json.loads((data_dir / "layout.json").read_text())["version"] >= 1
    )
    port = free_port()
    server = start_server(data_dir, port, "--no-auto-migrate", "--no-index")
    server.stop()


def _schema_versions(data_dir: Path, pg_url: str) -> list[int]:
    rows = _execute(data_dir, pg_url, "SELECT version FROM schema_migrations ORDER BY version")
    return [int(r[0]) for r in rows]


def _execute(data_dir: Path, pg_url: str, sql: str) -> list[Any]:
    if pg_url:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            cur = conn.execute(sql)
            return cur.fetchall() if cur.description else []
    import sqlite3

    conn = sqlite3.connect(data_dir / "morag.db", isolation_level=None)
    try:
        try:
            cur = conn.execute(sql)
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise
        return cur.fetchall()
    finally:
        conn.close()


def test_an_unreachable_database_is_one_line_and_exit_2(tmp_path: Path) -> None:
    url = f"postgresql://morag:hunter2@127.0.0.1:{free_port()}/morag"
    for first in (["--port", str(free_port())], ["migrate"], ["migrate", "--check"]):
        args = [*first, "--data-dir", str(tmp_path), "--database-url", url]
        done = subprocess.run(
            [sys.executable, "-m", "morag_worker.cli.server", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, (args, done.stderr)
        assert "cannot open the database postgresql://morag:***@127.0.0.1" in done.stderr
        assert "hunter2" not in done.stderr and "Traceback" not in done.stderr
