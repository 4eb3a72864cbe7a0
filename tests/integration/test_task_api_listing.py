"""Task listing (filters, paging), parameter validation, task types and workers, over HTTP
against a real morag-server."""

from __future__ import annotations

import json

import pytest
import requests
from harness import Cluster, submit_noop, wait_for

from morag_worker.cli.api import Api, ApiFailure


def _error(
    cluster: Cluster, key: str, method: str, path: str, **kwargs: object
) -> tuple[int, dict]:
    response = requests.request(
        method,
        cluster.url + path,
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
        **kwargs,  # type: ignore[arg-type]
    )
    return response.status_code, response.json()


def test_list_pages_filters_and_refuses_bad_paging(cluster: Cluster) -> None:
    key = cluster.key("alice", "user")
    user = Api(cluster.url, key)
    ids = [submit_noop(user, echo=str(n)) for n in range(7)]
    doc = user.submit_file(cluster.root / "server" / "admin.key", "document", {})  # any file
    seen, cursor = [], None
    while True:
        page = user.get("/api/v1/tasks", {"limit": 3, **({"cursor": cursor} if cursor else {})})
        seen += [t["task_id"] for t in page["tasks"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [doc, *reversed(ids)]
    only_docs = user.get("/api/v1/tasks", {"task_type": "document"})
    assert [t["task_id"] for t in only_docs["tasks"]] == [doc] and only_docs["next_cursor"] is None
    # the seed's form keeps working: ?state= and ?limit= alone, aliases for the type
    assert len(user.get("/api/v1/tasks?state=queued&limit=2")["tasks"]) == 2
    assert (
        user.get("/api/v1/tasks", {"task_type": "process_document"})["tasks"][0]["task_id"] == doc
    )
    for query, field in (
        ("limit=501", "limit"),
        ("limit=0", "limit"),
        ("cursor=not-one", "cursor"),
        ("task_type=sing", "task_type"),
        ("state=sleeping", "state"),
    ):
        status, body = _error(cluster, key, "GET", f"/api/v1/tasks?{query}")
        assert status == 422 and body["error"]["field"] == field, (query, body)
    assert "500" in _error(cluster, key, "GET", "/api/v1/tasks?limit=501")[1]["error"]["message"]


def test_unknown_parameters_are_refused_alike_as_json_and_multipart(cluster: Cluster) -> None:
    key = cluster.key("alice", "user")
    status, body = _error(
        cluster,
        key,
        "POST",
        "/api/v1/tasks",
        json={"task_type": "web", "parameters": {"url": "https://example.org/", "depth": 2}},
    )
    assert status == 422 and body["error"]["field"] == "parameters.depth"
    assert "web accepts: embed, keep_comments, url" in body["error"]["message"]
    form = {"task_type": "audio", "parameters": json.dumps({"speakers": 2})}
    status, body = _error(
        cluster, key, "POST", "/api/v1/tasks", data=form, files={"files": ("a.wav", b"RIFF")}
    )
    assert status == 422 and body["error"]["field"] == "parameters.speakers"
    assert "audio accepts: diarize, embed, language, num_speakers" in body["error"]["message"]
    status, body = _error(
        cluster,
        key,
        "POST",
        "/api/v1/tasks",
        json={"task_type": "noop", "parameters": {"sleep_s": "five"}},
    )
    assert status == 422 and "expected number" in body["error"]["message"]
    assert Api(cluster.url, key).get("/api/v1/tasks")["tasks"] == []  # nothing was queued


def test_task_types_say_who_serves_what_for_the_caller(cluster: Cluster) -> None:
    alice = Api(cluster.url, cluster.key("alice", "user"))
    bob = Api(cluster.url, cluster.key("bob", "user"))

    def online(api: Api) -> dict[str, int]:
        return {
            t["task_type"]: t["workers_online"] for t in api.get("/api/v1/task-types")["task_types"]
        }

    assert online(alice)["noop"] == 0
    types = {t["task_type"]: t for t in alice.get("/api/v1/task-types")["task_types"]}
    assert types["web"]["input"] == "url" and types["audio"]["input"] == "files"
    assert [p["name"] for p in types["noop"]["parameters"]] == ["echo", "embed", "sleep_s"]
    # a worker that registers for some types only (a CPU-only supervisor runs them all)
    worker = Api(cluster.url, cluster.key("alice", "worker"))
    body = {"worker_id": "doc-only", "task_types": ["document"], "capacity": 3}
    worker.post_json("/api/v1/workers/register", body)
    counts = online(alice)
    assert counts["document"] == 1 and counts["noop"] == 0 and counts["audio"] == 0
    capacity = {
        t["task_type"]: t["capacity_online"] for t in alice.get("/api/v1/task-types")["task_types"]
    }
    assert capacity["document"] == 3
    assert online(bob)["document"] == 0  # alice's worker never runs bob's tasks


def test_workers_by_role(cluster: Cluster) -> None:
    alice = Api(cluster.url, cluster.key("alice", "user"))
    bob = Api(cluster.url, cluster.key("bob", "user"))
    cluster.supervisor(cluster.key_file("alice"), "--cpu-procs", "1", "--worker-id", "alice-box")
    running = submit_noop(alice, sleep_s=30)
    listed = wait_for(
        lambda: [w for w in alice.get("/api/v1/workers")["workers"] if w["running"] == 1],
        30,
        "running",
    )
    [worker] = listed
    assert worker["worker_id"] == "alice-box" and worker["online"] and worker["capacity"] == 1
    assert worker["devices"] == [] or worker["devices"][0]["kind"] == "cpu"
    assert bob.get("/api/v1/workers")["workers"] == []
    assert [w["worker_id"] for w in cluster.admin.get("/api/v1/workers")["workers"]] == [
        "alice-box"
    ]
    worker_key = cluster.key("alice", "worker")
    with pytest.raises(ApiFailure, match=r"403.*role admin or user"):
        Api(cluster.url, worker_key).get("/api/v1/workers")
    alice.delete(f"/api/v1/tasks/{running}")
