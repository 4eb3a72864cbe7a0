"""Documents, images and web pages through a real server and supervisor, then search.

The fixtures are the committed files in tests/fixtures (see the generator scripts there);
web pages are served from a local HTTP server, which the supervisor may fetch because it
runs with --allow-private-urls (the internet is not reachable from the tests).
"""

from __future__ import annotations

import functools
import http.server
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Cluster, wait_for

from morag_worker.cli.api import TERMINAL, Api

FIXTURES = Path(__file__).parent.parent / "fixtures"
sys.path.insert(0, str(FIXTURES))
from gen_documents import PHRASES  # noqa: E402

BAD_INPUTS = {
    "documents/bomb.docx": "document",
    "documents/corrupt.pdf": "document",
    "documents/encrypted.pdf": "document",
    "images/bomb.png": "image",
}
WEB_PAGES = ("night-trains", "river-sensors", "bakery-cooperative")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def pages() -> Iterator[str]:
    handler = functools.partial(_Quiet, directory=str(FIXTURES / "web"))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _first_sentence(text: str) -> str:
    return text.strip().splitlines()[0].split(". ")[0]


def test_content_types_end_to_end_then_search(cluster_factory, pages: str) -> None:
    cluster: Cluster = cluster_factory(index=True)
    user = cluster.user("alice")
    cluster.supervisor(cluster.key_file("alice"), "--cpu-procs", "2", "--allow-private-urls")
    queries: dict[str, str] = {}  # task id -> a phrase that must find it first
    for name, phrase in PHRASES.items():
        queries[user.submit_file(FIXTURES / "documents" / name, "document", {})] = phrase
    image_text = (FIXTURES / "images" / "text.txt").read_text()
    queries[user.submit_file(FIXTURES / "images" / "clean.png", "image", {})] = (
        "pumping station pressure test and backup generator"
    )
    for page in WEB_PAGES:
        body = json.loads((FIXTURES / "web" / f"{page}.json").read_text())["body"]
        task = user.post_json(
            "/api/v1/tasks", {"task_type": "web", "parameters": {"url": f"{pages}/{page}.html"}}
        )
        queries[task["task_id"]] = _first_sentence(body)
    bad = {user.submit_file(FIXTURES / path, kind, {}): path for path, kind in BAD_INPUTS.items()}

    ids = [*queries, *bad]
    wait_for(
        lambda: all(user.get(f"/api/v1/tasks/{i}")["state"] in TERMINAL for i in ids),
        300,
        "all tasks",
    )
    for task_id in queries:
        info = user.get(f"/api/v1/tasks/{task_id}")
        assert info["state"] == "completed", info
    for task_id, path in bad.items():
        info = user.get(f"/api/v1/tasks/{task_id}")
        assert info["state"] == "failed" and info["attempt"] == 1, (path, info)
        assert info["last_error"]["type"] == "bad_input" and not info["last_error"]["retryable"]

    image = user.get(f"/api/v1/tasks/{next(iter(list(queries)[len(PHRASES) :]))}/result")
    assert "Elm Street" in image["result"]["content"] and "Elm Street" in image_text

    wait_for(
        lambda: all(user.get(f"/api/v1/tasks/{i}")["indexed_at"] for i in queries), 180, "indexing"
    )
    for task_id, phrase in queries.items():
        hits = user.post_json("/api/v1/search", {"query": phrase, "limit": 3})["hits"]
        assert hits and hits[0]["task_id"] == task_id, (phrase, hits[:1])

    # Another user sees none of it.
    assert (
        Api(cluster.url, cluster.key("bob", "user")).post_json(
            "/api/v1/search", {"query": PHRASES["sample.md"], "limit": 5}
        )["hits"]
        == []
    )
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "morag_worker.cli.morag",
            "--server-url",
            cluster.url,
            "search",
            PHRASES["sample.txt"],
        ],
        env={
            "MORAG_API_KEY": user.session.headers["Authorization"].split()[1],
            "PATH": "/usr/bin:/bin",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 0 and cli.stdout.startswith("1. ") and "sample.txt" in cli.stdout
