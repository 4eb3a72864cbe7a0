"""The server's HTTP API against a real morag-server: uploads, validation, files, keys."""

from __future__ import annotations

import hashlib
from pathlib import Path

import requests
from harness import Cluster

from morag_worker import __version__
from morag_worker.cli.api import Api


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_oversize_upload_is_413_and_nothing_is_kept(cluster_factory, tmp_path: Path) -> None:
    cluster: Cluster = cluster_factory("--max-upload-bytes", "1000")
    key = cluster.key("alice", "user")
    small, big = b"x" * 100, b"y" * 5000
    reply = requests.post(
        f"{cluster.url}/api/v1/tasks",
        headers=_auth(key),
        timeout=10,
        data={"task_type": "document"},
        files=[("files", ("a.txt", small)), ("files", ("b.txt", big))],
    )
    assert reply.status_code == 413
    body = reply.json()["error"]
    assert body["code"] == "file_too_large" and "b.txt" in body["message"]
    stored = [p for p in (cluster.root / "server" / "files").rglob("*") if p.is_file()]
    assert stored == []  # not even the small file that came first
    assert Api(cluster.url, key).get("/api/v1/tasks")["tasks"] == []


def test_malformed_requests_are_422_naming_the_field(cluster: Cluster) -> None:
    headers = _auth(cluster.key("alice", "user"))
    url = f"{cluster.url}/api/v1/tasks"
    cases = [
        (
            dict(data=b'{"task_type": "web", ', headers={"content-type": "application/json"}),
            None,
            "not valid JSON",
        ),
        (dict(json={"task_type": "web", "parameters": {}}), "parameters.url", "http(s) URL"),
        (dict(json={"task_type": "sing", "parameters": {}}), "task_type", "unknown type"),
        (
            dict(json={"task_type": "web", "parameters": {"url": "http://x"}, "priority": "hi"}),
            "priority",
            "integer",
        ),
        (
            dict(
                data={"task_type": "document", "parameters": "{not json"},
                files=[("files", ("a.txt", b"a"))],
            ),
            "parameters",
            "not valid JSON",
        ),
        (
            dict(data={"task_type": "document"}, files=[("other", ("a.txt", b"a"))]),
            "other",
            "unknown file field",
        ),
        (dict(files={"task_type": (None, "document")}), "files", "at least one"),
    ]
    for kwargs, field, words in cases:
        extra_headers = kwargs.pop("headers", {})
        reply = requests.post(url, headers={**headers, **extra_headers}, timeout=10, **kwargs)
        assert reply.status_code == 422, (kwargs, reply.text)
        error = reply.json()["error"]
        assert error["field"] == field and words in error["message"], error
    worker = _auth(cluster.key("alice", "worker"))
    reply = requests.post(
        f"{cluster.url}/api/v1/workers/w/lease", headers=worker, timeout=10, json={"max_tasks": 0}
    )
    assert reply.status_code == 422 and reply.json()["error"]["field"] == "max_tasks"


def test_upload_is_content_addressed_and_served_only_to_the_lease_holder(
    cluster: Cluster,
) -> None:
    alice = Api(cluster.url, cluster.key("alice", "user"))
    payload = b"hello world\n" * 1000
    reply = requests.post(
        f"{cluster.url}/api/v1/tasks",
        headers={"Authorization": alice.session.headers["Authorization"]},
        data={"task_type": "document"},
        files=[("files", ("h.txt", payload))],
        timeout=10,
    )
    task_id = reply.json()["task_id"]
    file = alice.get(f"/api/v1/tasks/{task_id}")["input_files"][0]
    assert file["sha256"] == hashlib.sha256(payload).hexdigest() and file["size"] == len(payload)
    worker_key, other_key = cluster.key("alice", "worker"), cluster.key("alice", "worker")
    file_url = cluster.url + file["url"]
    assert requests.get(file_url, headers=_auth(worker_key), timeout=5).status_code == 404
    lease = requests.post(
        f"{cluster.url}/api/v1/workers/w/lease",
        headers=_auth(worker_key),
        json={"max_tasks": 1},
        timeout=10,
    ).json()
    assert lease["tasks"][0]["task_id"] == task_id
    whole = requests.get(file_url, headers=_auth(worker_key), timeout=5)
    assert whole.content == payload and whole.headers["etag"] == f'"{file["sha256"]}"'
    part = requests.get(file_url, headers={**_auth(worker_key), "Range": "bytes=12-23"}, timeout=5)
    assert part.status_code == 206 and part.content == payload[12:24]
    assert requests.get(file_url, headers=_auth(other_key), timeout=5).status_code == 404


def test_keys_roles_expiry_and_revocation(cluster: Cluster) -> None:
    user_key = cluster.key("alice", "user")
    assert (
        requests.get(f"{cluster.url}/api/v1/keys", headers=_auth(user_key), timeout=5).status_code
        == 403
    )
    created = cluster.admin.post_json("/api/v1/keys", {"user_id": "bob", "role": "worker"})
    assert created["key"].startswith("mrg_") and created["info"]["role"] == "worker"
    who = requests.get(
        f"{cluster.url}/api/v1/workers/test", headers=_auth(created["key"]), timeout=5
    ).json()
    assert who["user_id"] == "bob" and who["role"] == "worker"
    cluster.admin.delete(f"/api/v1/keys/{created['info']['key_id']}")
    reply = requests.get(
        f"{cluster.url}/api/v1/workers/test", headers=_auth(created["key"]), timeout=5
    )
    assert reply.status_code == 401 and "revoked" in reply.json()["error"]["message"]
    listed = cluster.admin.get("/api/v1/keys")["keys"]
    assert all("key_hash" not in k and "key" not in k for k in listed)
    own = requests.get(
        f"{cluster.url}/api/v1/workers/test",
        timeout=5,
        headers={"Authorization": cluster.admin.session.headers["Authorization"]},
    )
    last = requests.delete(
        f"{cluster.url}/api/v1/keys/{own.json()['key_id']}",
        timeout=5,
        headers={"Authorization": cluster.admin.session.headers["Authorization"]},
    )
    assert last.status_code == 409 and last.json()["error"]["code"] == "last_admin_key"
    admin_key_file = cluster.root / "server" / "admin.key"
    assert admin_key_file.stat().st_mode & 0o777 == 0o600
    assert (
        admin_key_file.read_text().strip()
        not in (cluster.root / "server" / "server.log").read_text()
    )


def test_long_poll_returns_when_a_task_arrives(cluster: Cluster) -> None:
    import threading
    import time

    worker = _auth(cluster.key("alice", "worker"))
    user = cluster.user()
    result: dict[str, float] = {}

    def lease() -> None:
        started = time.monotonic()
        reply = requests.post(
            f"{cluster.url}/api/v1/workers/w/lease",
            headers=worker,
            json={"max_tasks": 1, "wait_seconds": 20},
            timeout=30,
        ).json()
        result["tasks"] = len(reply["tasks"])
        result["waited"] = time.monotonic() - started

    thread = threading.Thread(target=lease)
    thread.start()
    time.sleep(1.0)
    user.post_json("/api/v1/tasks", {"task_type": "noop", "parameters": {}})
    thread.join(timeout=30)
    assert result["tasks"] == 1
    assert result["waited"] < 10  # woken by the submission, not by the 20 s timeout
    empty = requests.get(f"{cluster.url}/api/v1/workers/w/tasks/next", headers=worker, timeout=5)
    assert empty.status_code == 204


def test_batched_results_are_fenced_one_by_one(cluster: Cluster) -> None:
    user = cluster.user()
    worker = _auth(cluster.key("alice", "worker"))
    ids = [
        user.post_json("/api/v1/tasks", {"task_type": "noop", "parameters": {}})["task_id"]
        for _ in range(2)
    ]
    base = f"{cluster.url}/api/v1/workers/w"
    specs = requests.post(
        f"{base}/lease", headers=worker, json={"max_tasks": 2}, timeout=10
    ).json()["tasks"]
    tokens = {s["task_id"]: s["lease_token"] for s in specs}
    body = {
        "results": [
            {
                "task_id": ids[0],
                "lease_token": tokens[ids[0]],
                "status": "completed",
                "result": {"content": "one"},
            },
            {
                "task_id": ids[1],
                "lease_token": "0" * 32,
                "status": "completed",
                "result": {"content": "forged"},
            },
            {
                "task_id": "t_missing",
                "lease_token": "0" * 32,
                "status": "failed",
                "error": {"type": "x", "message": "y", "retryable": True},
            },
        ]
    }
    reply = requests.post(f"{base}/results", headers=worker, json=body, timeout=10).json()
    outcomes = {r["task_id"]: r for r in reply["results"]}
    assert outcomes[ids[0]]["state"] == "completed"
    assert outcomes[ids[1]]["error"]["code"] == "lease_lost"
    assert outcomes["t_missing"]["error"]["code"] == "not_found"
    assert user.get(f"/api/v1/tasks/{ids[1]}")["state"] == "leased"
    bad = requests.post(
        f"{base}/results",
        headers=worker,
        timeout=10,
        json={"results": [{"task_id": ids[1], "lease_token": "x", "status": "failed"}]},
    )
    assert bad.status_code == 422 and "needs an error" in bad.json()["error"]["message"]


def test_server_metrics_count_tasks_by_type_and_state(cluster: Cluster) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    user = cluster.user()
    for _ in range(3):
        user.post_json("/api/v1/tasks", {"task_type": "noop", "parameters": {}})
    text = requests.get(f"{cluster.url}/metrics", timeout=5).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {
        (s.labels["task_type"], s.labels["state"]): s.value
        for s in families["morag_server_tasks"].samples
    }
    assert samples[("noop", "queued")] == 3 and samples[("audio", "queued")] == 0
    assert "morag_server_workers_online" in families
    assert "morag_server_lease_wait_seconds" in families


def test_worker_protocol_versions_are_negotiated_at_registration(cluster: Cluster) -> None:
    worker = _auth(cluster.key("alice", "worker"))
    register = f"{cluster.url}/api/v1/workers/register"
    # a worker of release 0.1.0 sends no protocol version: it speaks version 1, and gets
    # exactly the reply fields that release knows (its models refuse any other)
    old = requests.post(
        register, json={"worker_id": "old-1", "version": "0.1.0"}, headers=worker, timeout=5
    )
    assert old.status_code == 200
    assert set(old.json()) == {"worker_id", "lease_ttl_s", "heartbeat_interval_s", "max_wait_s"}
    modern = requests.post(
        register, json={"worker_id": "new-0", "protocol_version": 1}, headers=worker, timeout=5
    ).json()
    assert modern["protocol_version"] == 1 and modern["server_version"] == __version__
    newer = requests.post(
        register,
        json={"worker_id": "new-1", "version": "9.0.0", "protocol_version": 7},
        headers=worker,
        timeout=5,
    )
    error = newer.json()["error"]
    assert newer.status_code == 400 and error["code"] == "unsupported_protocol_version"
    assert "speaks protocol version 7 (release 9.0.0)" in error["message"]
    assert "supports 1" in error["message"] and "upgrade the server first" in error["message"]
    assert error["field"] == "protocol_version"
    # a real supervisor reports its release and protocol version
    _, _health = cluster.supervisor(cluster.key_file("alice"), "--cpu-procs", "1")
    workers = {w["worker_id"]: w for w in cluster.admin.get("/api/v1/workers")["workers"]}
    real = [w for w in workers.values() if w["worker_id"] not in ("old-1", "new-0")]
    assert real and real[0]["protocol_version"] == 1 and real[0]["version"] == __version__
    assert workers["old-1"]["protocol_version"] == 1 and "new-1" not in workers
    assert workers["old-1"]["version"] == "0.1.0"
