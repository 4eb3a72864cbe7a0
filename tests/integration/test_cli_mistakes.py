"""The three programs with the mistakes people make: a wrong server, a missing or wrong
key, a flag typo, a closed pipe; and --version and readable --help on each."""

from __future__ import annotations

import http.server
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_runner import run
from harness import Cluster

from morag_worker import __version__
from morag_worker.cli.local import free_port


@pytest.fixture
def not_morag() -> Iterator[str]:
    """Some other web server (a proxy's default page, another service on the port)."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_wrong_server_or_key_says_what_to_check(
    cluster: Cluster, not_morag: str, tmp_path: Path
) -> None:
    key = cluster.key("hank", "user")
    closed = f"http://127.0.0.1:{free_port()}"
    empty = tmp_path / "empty.key"
    empty.write_text("\n")
    cases = [
        (
            {"MORAG_SERVER_URL": closed, "MORAG_API_KEY": key},
            f"cannot reach morag-server at {closed} (Connection refused); is morag-server running",
        ),
        ({"MORAG_SERVER_URL": "127.0.0.1:8000", "MORAG_API_KEY": key}, "the scheme is needed"),
        (
            {"MORAG_SERVER_URL": cluster.url + "/api/v1/", "MORAG_API_KEY": key},
            f"give the server's base URL ({cluster.url}), without /api/v1",
        ),
        (
            {"MORAG_SERVER_URL": not_morag, "MORAG_API_KEY": key},
            f"HTTP 404 from {not_morag}/api/v1/",
        ),
        ({"MORAG_SERVER_URL": cluster.url}, "no API key: set MORAG_API_KEY"),
        (
            {"MORAG_SERVER_URL": cluster.url, "MORAG_API_KEY": "mrg_x_y"},
            "HTTP 401: unknown API key",
        ),
        ({"MORAG_SERVER_URL": cluster.url, "MORAG_API_KEY_FILE": str(empty)}, "the file is empty"),
        (
            {"MORAG_SERVER_URL": cluster.url, "MORAG_API_KEY_FILE": str(tmp_path / "no.key")},
            "No such file or directory",
        ),
    ]
    for env, words in cases:
        for command in (("tasks",), ("status", "t_1"), ("submit", __file__, "--type", "document")):
            done = run("morag", *command, env=env)
            assert done.returncode == 1, (env, command, done.stderr)
            assert words in done.stderr and len(done.stderr.splitlines()) == 1, (env, done.stderr)


def test_closed_pipe_is_not_a_traceback(cluster: Cluster) -> None:
    user = cluster.user("ivy")
    key = user.session.headers["Authorization"].split()[1]
    cluster.supervisor(cluster.key_file("ivy"), "--cpu-procs", "1")
    # larger than a pipe's buffer, so the writer surely meets the closed pipe
    task_id = user.post_json(
        "/api/v1/tasks", {"task_type": "noop", "parameters": {"echo": "word " * 60_000}}
    )["task_id"]
    assert user.wait(task_id, 60)["state"] == "completed"
    for command in (f"result {task_id} --json", f"result {task_id}", "tasks --json"):
        piped = subprocess.run(
            [
                "bash",
                "-o",
                "pipefail",
                "-c",
                f"{sys.executable} -m morag_worker.cli.morag {command} | head -c 10",
            ],
            env={
                "MORAG_SERVER_URL": cluster.url,
                "MORAG_API_KEY": key,
                "PATH": "/usr/bin:/bin",
                **{k: v for k, v in __import__("os").environ.items() if k == "PYTHONPATH"},
            },
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert len(piped.stdout) == 10 and piped.stderr == "", (command, piped.stderr)
        assert piped.returncode in (0, 141), piped.returncode  # 141: as if ended by SIGPIPE


@pytest.mark.parametrize("program", ["morag", "server", "supervisor"])
def test_version_and_one_line_errors(program: str) -> None:
    name = {"morag": "morag", "server": "morag-server", "supervisor": "morag-supervisor"}[program]
    version = run(program, "--version")
    assert (
        version.returncode == 0 and version.stdout.strip() == f"{name} {__version__} (morag-worker)"
    )
    typo = run(program, "--prot", "80")
    assert typo.returncode == 2
    first, hint = typo.stderr.splitlines()
    assert first.startswith(f"{name}: error: unrecognized arguments: --prot")
    assert hint == f"(see '{name} --help')" and "usage:" not in typo.stderr
    if program != "morag":
        assert first.endswith("(did you mean --port?)") or program == "supervisor"


def _help(program: str, *args: str) -> str:
    shown = run(program, *args, "--help")
    assert shown.returncode == 0, shown.stderr
    return shown.stdout


def test_help_is_plain_text_and_every_server_flag_names_its_variable() -> None:
    texts = [_help("morag"), _help("server"), _help("supervisor")]
    for sub in ("keys create", "submit", "tasks", "models fetch", "models import", "demo"):
        texts.append(_help("morag", *sub.split()))
    for text in texts:
        assert not re.search(r"``|:class:|:func:|:data:|\.\. ", text), text
    server = texts[1]
    flags = re.findall(r"^  (--[a-z-]+)", server, re.M)
    assert len(flags) >= 15
    blocks = re.split(r"\n  (?=--)", server.split("options:", 1)[1])
    for block in blocks:
        flag = block.split()[0]
        if flag in ("-h,", "--version"):
            continue
        assert re.search(r"\[(MORAG_|LOG_LEVEL)[A-Z_]*", block.replace("\n", " ")), block


def test_server_refuses_bad_settings_in_one_line(tmp_path: Path) -> None:
    for env, args, words in (
        (
            {"MORAG_SERVER_PORT": "eighty"},
            (),
            "MORAG_SERVER_PORT: expected an integer, got 'eighty'",
        ),
        ({}, ("--max-wait", "0"), "--max-wait must be in (0, 300]"),
        ({}, ("--port", "x"), "--port: expected an integer, got 'x'"),
    ):
        done = run("server", "--data-dir", str(tmp_path), *args, env=env)
        assert done.returncode in (1, 2) and words in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) <= 2


def test_supervisor_mistakes(cluster: Cluster, tmp_path: Path) -> None:
    key_file = cluster.key_file("jo")
    no_scheme = run("supervisor", "--server-url", "127.0.0.1:1", "--api-key-file", str(key_file))
    assert no_scheme.returncode == 2 and "the scheme is needed" in no_scheme.stderr
    no_key = run("supervisor", "--server-url", cluster.url, "--env-file", str(tmp_path / "none"))
    assert no_key.returncode == 2 and "morag keys create --role worker" in no_key.stderr
    bad = tmp_path / "bad.key"
    bad.write_text("mrg_nope_nope")
    refused = run(
        "supervisor",
        "--server-url",
        cluster.url,
        "--api-key-file",
        str(bad),
        "--cpu-procs",
        "1",
        "--health-port",
        str(free_port()),
        "--health-host",
        "127.0.0.1",
    )
    assert (
        refused.returncode != 0
        and "refused this worker's API key" in refused.stderr + refused.stdout
    )
