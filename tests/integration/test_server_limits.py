"""Request limits of a real morag-server: body sizes per endpoint (413), parameter nesting
(one limit for JSON and multipart), stalled or trickling bodies (408) and long-polls per
key (429). Every refusal is the usual JSON error and names the limit and its flag."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

import rawhttp
import requests
from harness import Cluster


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _lease(cluster: Cluster, worker: str, n: int = 1) -> list[dict]:
    reply = requests.post(
        f"{cluster.url}/api/v1/workers/w1/lease",
        headers=_auth(worker),
        json={"max_tasks": n},
        timeout=10,
    )
    return list(reply.json()["tasks"])


def _metric(cluster: Cluster, name: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(f"{cluster.url}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"{name} not in /metrics")


def _nested(depth: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def test_default_limits_refuse_oversize_task_bodies_and_are_advertised(cluster: Cluster) -> None:
    user = _auth(cluster.key("alice", "user"))
    big = {"task_type": "noop", "parameters": {"blob": "x" * (2 << 20)}}
    reply = requests.post(f"{cluster.url}/api/v1/tasks", headers=user, json=big, timeout=30)
    assert reply.status_code == 413, reply.text[:300]
    error = reply.json()["error"]
    assert error["code"] == "body_too_large"
    assert "1048576 bytes" in error["message"] and "--max-body-bytes" in error["message"]
    # the same body without a Content-Length (chunked) is cut off while it streams
    chunked = requests.post(
        f"{cluster.url}/api/v1/tasks",
        headers={**user, "Content-Type": "application/json"},
        data=iter([json.dumps(big).encode()[i : i + 65536] for i in range(0, 2200000, 65536)]),
        timeout=30,
    )
    assert chunked.status_code == 413 and chunked.json()["error"]["code"] == "body_too_large"
    # both were answered on a connection kept open: the client reads the 413, not a reset
    assert "close" not in (reply.headers.get("connection", ""), chunked.headers.get("connection"))
    worker = _auth(cluster.key("alice", "worker"))
    registered = requests.post(
        f"{cluster.url}/api/v1/workers/register",
        headers=worker,
        json={"worker_id": "w1", "protocol_version": 1},
        timeout=10,
    ).json()
    assert registered["max_body_bytes"] == 1 << 20
    assert registered["max_result_bytes"] == 64 << 20
    assert cluster.user().get("/api/v1/tasks")["tasks"] == []


def test_results_have_their_own_larger_limit(cluster_factory) -> None:
    cluster: Cluster = cluster_factory("--max-body-bytes", "65536", "--max-result-bytes", "1048576")
    user = cluster.user()
    worker_key = cluster.key("alice", "worker")
    worker = _auth(worker_key)
    for _ in range(4):
        user.post_json("/api/v1/tasks", {"task_type": "noop", "parameters": {}})
    small_params = {"task_type": "noop", "parameters": {"blob": "x" * 100_000}}
    reply = requests.post(
        f"{cluster.url}/api/v1/tasks",
        headers={"Authorization": user.session.headers["Authorization"]},
        json=small_params,
        timeout=10,
    )
    assert reply.status_code == 413 and "65536 bytes" in reply.json()["error"]["message"]
    tasks = _lease(cluster, worker_key, 4)
    base = f"{cluster.url}/api/v1/workers/w1/tasks"

    def result(task: dict, size: int) -> dict:
        return {
            "lease_token": task["lease_token"],
            "status": "completed",
            "result": {"content": "r" * size},
        }

    too_big = requests.post(
        f"{base}/{tasks[0]['task_id']}/result",
        headers=worker,
        json=result(tasks[0], 2 << 20),
        timeout=30,
    )
    assert too_big.status_code == 413
    error = too_big.json()["error"]
    assert error["code"] == "body_too_large" and "--max-result-bytes" in error["message"]
    assert "1048576 bytes" in error["message"]
    fits = requests.post(
        f"{base}/{tasks[0]['task_id']}/result",
        headers=worker,
        json=result(tasks[0], 500_000),
        timeout=30,
    )
    assert fits.status_code == 200 and fits.json()["state"] == "completed"
    batch = {"results": [{"task_id": t["task_id"], **result(t, 500_000)} for t in tasks[1:]]}
    over = requests.post(
        f"{cluster.url}/api/v1/workers/w1/results", headers=worker, json=batch, timeout=30
    )
    assert over.status_code == 413 and "--max-result-bytes" in over.json()["error"]["message"]
    states = {t["task_id"]: user.get(f"/api/v1/tasks/{t['task_id']}")["state"] for t in tasks}
    assert sorted(states.values()) == ["completed", "leased", "leased", "leased"]


def test_parameters_nesting_has_one_limit_for_json_and_multipart(
    cluster_factory: Callable[..., Cluster],
) -> None:
    # A plugin type: the server passes its parameters through unchecked, so only the
    # nesting limit can refuse them.
    cluster = cluster_factory("--extra-task-types", "nested")
    key = cluster.key("alice", "user")
    url = f"{cluster.url}/api/v1/tasks"
    for depth in (33, 250):
        params = _nested(depth)
        as_json = requests.post(
            url,
            headers=_auth(key),
            json={"task_type": "nested", "parameters": params},
            timeout=10,
        )
        as_form = requests.post(
            url,
            headers=_auth(key),
            data={"task_type": "nested", "parameters": json.dumps(params)},
            files=[("files", ("a.txt", b"hello"))],
            timeout=10,
        )
        for reply in (as_json, as_form):
            assert reply.status_code == 422, (depth, reply.text[:300])
            error = reply.json()["error"]
            assert error["field"] == "parameters"
            assert "nested" in error["message"] and "32 levels" in error["message"]
    hostile = "[" * 100_000 + "]" * 100_000
    reply = requests.post(
        url,
        headers=_auth(key),
        data={"task_type": "nested", "parameters": hostile},
        files=[("files", ("a.txt", b"hello"))],
        timeout=10,
    )
    assert reply.status_code in (413, 422), reply.text[:300]
    assert reply.json()["error"]["field"] == "parameters"
    ok = requests.post(
        url,
        headers=_auth(key),
        data={"task_type": "nested", "parameters": json.dumps(_nested(32))},
        files=[("files", ("a.txt", b"hello"))],
        timeout=10,
    )
    assert ok.status_code == 201, ok.text


def test_stalled_and_trickling_bodies_are_cut_off_with_408(cluster_factory) -> None:
    cluster: Cluster = cluster_factory("--body-timeout", "1.5", "--min-body-rate", "2000")
    key = cluster.key("alice", "user")
    headers = {**_auth(key), "Content-Type": "application/json", "Content-Length": "4000"}
    # sends 10 bytes of its 4000 and then nothing
    stalled = rawhttp.request(
        cluster.port, "POST", "/api/v1/tasks", headers, [b'{"task_typ', b"e"], pause_s=10
    )
    assert stalled.status == 408 and stalled.sent < 4000
    assert stalled.json()["error"]["code"] == "body_timeout"
    assert "--body-timeout" in stalled.json()["error"]["message"]
    assert stalled.closed
    body = json.dumps({"task_type": "noop", "parameters": {"x": "y" * 3900}}).encode()
    headers["Content-Length"] = str(len(body))
    results: list[rawhttp.RawReply] = []

    def trickle() -> None:  # one byte every 0.2 s: never idle, far too slow
        results.append(
            rawhttp.request(
                cluster.port, "POST", "/api/v1/tasks", headers, rawhttp.trickle(body), pause_s=0.2
            )
        )

    threads = [threading.Thread(target=trickle) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(results) == 12
    for reply in results:
        assert reply.status == 408 and reply.sent < len(body)
        assert "--min-body-rate" in reply.json()["error"]["message"]
    # a multipart upload that stalls keeps no temporary file
    boundary = "b0undary"
    head = rawhttp.multipart([("task_type", None, b"document")], boundary)[: -len(boundary) - 6]
    disposition = 'Content-Disposition: form-data; name="files"; filename="s"'
    head += f"--{boundary}\r\n{disposition}\r\n\r\n".encode()
    upload = rawhttp.request(
        cluster.port,
        "POST",
        "/api/v1/tasks",
        {
            **_auth(key),
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": "1000000",
        },
        [head, b"z" * 70_000],
        pause_s=10,
    )
    assert upload.status == 408
    tmp = cluster.root / "server" / "files" / "tmp"
    assert rawhttp.wait_until(lambda: not any(tmp.iterdir()), 10)
    assert cluster.user().get("/api/v1/tasks")["tasks"] == []
    # an ordinary request still works
    ok = requests.post(
        f"{cluster.url}/api/v1/tasks",
        headers=_auth(key),
        json={"task_type": "noop", "parameters": {}},
        timeout=10,
    )
    assert ok.status_code == 201


def test_long_polls_per_key_are_limited_with_429(cluster_factory) -> None:
    cluster: Cluster = cluster_factory("--max-long-polls-per-key", "2", "--max-wait", "4")
    worker = cluster.key("alice", "worker")
    other = cluster.key("alice", "worker")
    url = f"{cluster.url}/api/v1/workers/w1/lease"
    waiting: list[int] = []

    def poll() -> None:
        reply = requests.post(
            url, headers=_auth(worker), json={"max_tasks": 1, "wait_seconds": 4}, timeout=30
        )
        waiting.append(reply.status_code)

    threads = [threading.Thread(target=poll) for _ in range(2)]
    for thread in threads:
        thread.start()
    assert rawhttp.wait_until(lambda: _metric(cluster, "morag_server_long_polls_waiting") == 2)
    third = requests.post(
        url, headers=_auth(worker), json={"max_tasks": 1, "wait_seconds": 4}, timeout=30
    )
    assert third.status_code == 429
    assert int(third.headers["Retry-After"]) >= 1
    error = third.json()["error"]
    assert error["code"] == "too_many_long_polls" and "--max-long-polls-per-key" in error["message"]
    # a lease that does not wait is not a long-poll; another key has its own allowance
    now = requests.post(url, headers=_auth(worker), json={"max_tasks": 1}, timeout=10)
    assert now.status_code == 200
    seed = requests.get(
        f"{cluster.url}/api/v1/workers/w1/tasks/next?wait_seconds=2",
        headers=_auth(worker),
        timeout=10,
    )
    assert seed.status_code == 429
    theirs = requests.post(
        f"{cluster.url}/api/v1/workers/w2/lease",
        headers=_auth(other),
        json={"max_tasks": 1, "wait_seconds": 0.5},
        timeout=10,
    )
    assert theirs.status_code == 200
    for thread in threads:
        thread.join(timeout=30)
    assert waiting == [200, 200]
    again = requests.post(
        url, headers=_auth(worker), json={"max_tasks": 1, "wait_seconds": 0.5}, timeout=10
    )
    assert again.status_code == 200  # the slots were given back
    assert _metric(cluster, "morag_server_long_polls_waiting") == 0
