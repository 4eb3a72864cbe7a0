"""Reader comments through a real server and supervisor: out of the article by default,
kept and marked with ``keep_comments``, a value that is not a boolean refused by the
server (the worker's own check, for plugins and older servers, is in
tests/unit/test_web_comments.py).

The page is a generated blog post whose 14 responses sit inside the post's own container
(tests/fixtures/gen_web_pages.py, template ``inline_container``), served on 127.0.0.1;
the supervisor may fetch it because it runs with --allow-private-urls.
"""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Cluster, wait_for

from morag_worker.cli.api import TERMINAL, ApiFailure

FIXTURES = Path(__file__).parent.parent / "fixtures"
sys.path.insert(0, str(FIXTURES))
from gen_web_pages import render  # noqa: E402


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def post(tmp_path: Path) -> Iterator[tuple[str, object]]:
    page, html = render("inline_container", 3, comments=14)
    (tmp_path / "post.html").write_text(html)
    handler = functools.partial(_Quiet, directory=str(tmp_path))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/post.html", page
    httpd.shutdown()


def test_comments_out_by_default_and_marked_on_request(cluster_factory, post) -> None:
    url, page = post
    cluster: Cluster = cluster_factory()
    user = cluster.user("alice")
    cluster.supervisor(cluster.key_file("alice"), "--cpu-procs", "1", "--allow-private-urls")
    submit = {"plain": {"url": url}, "kept": {"url": url, "keep_comments": True}}
    ids = {
        name: user.post_json("/api/v1/tasks", {"task_type": "web", "parameters": params})["task_id"]
        for name, params in submit.items()
    }
    # The server checks the parameter's type before anything is queued.
    typo = {"task_type": "web", "parameters": {"url": url, "keep_comments": "maybe"}}
    with pytest.raises(ApiFailure, match=r"422.*parameters\.keep_comments: expected boolean"):
        user.post_json("/api/v1/tasks", typo)
    wait_for(
        lambda: all(user.get(f"/api/v1/tasks/{i}")["state"] in TERMINAL for i in ids.values()),
        120,
        "web tasks",
    )
    comments = page.all_comments()
    assert len(comments) > 14  # 14 responses and their replies

    plain = user.get(f"/api/v1/tasks/{ids['plain']}/result")["result"]
    assert "## Comments" not in plain["content"]
    assert page.blocks[0][1] in plain["content"]  # the article's first paragraph
    for comment in comments:
        assert comment.paragraphs[-1] not in plain["content"], comment
    assert plain["metadata"]["comments"] == len(comments)
    assert plain["metadata"]["comments_kept"] is False

    kept = user.get(f"/api/v1/tasks/{ids['kept']}/result")["result"]
    article, marker, section = kept["content"].partition("\n## Comments\n")
    assert marker and article.strip() == plain["content"].strip()
    lines = section.strip().splitlines()
    assert len(lines) == len(comments)
    for comment, line in zip(comments, lines, strict=True):
        assert line.lstrip().startswith(f"- **{comment.author}**")
        assert " ".join(comment.paragraphs) in line
    assert any(c["heading_path"][-1] == "Comments" for c in kept["chunks"])

    # The same from the command line, as a user types it.
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "morag_worker.cli.morag",
            "--server-url",
            cluster.url,
            "submit",
            url,
            "--type",
            "web",
            "--param",
            "keep_comments=true",
            "--wait",
        ],
        env={
            "MORAG_API_KEY": user.session.headers["Authorization"].split()[1],
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 0, cli.stderr
    assert "\n## Comments\n" in cli.stdout and f"- **{comments[0].author}**" in cli.stdout
