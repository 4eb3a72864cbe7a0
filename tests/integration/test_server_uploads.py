"""Uploads against a real morag-server: a refused or broken upload keeps nothing, malformed
multipart is a JSON 4xx (never a 500 or a dropped connection), and stored files that no
task references, or partial uploads a killed server left behind, are swept after a grace
period and counted in ``morag_server_files_reclaimed_bytes_total``."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from pathlib import Path

import rawhttp
import requests
from harness import Cluster

BOUNDARY = "b0undary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _stored(cluster: Cluster) -> list[Path]:
    """Every file in the store and in its temp dir."""
    return sorted(p for p in (cluster.root / "server" / "files").rglob("*") if p.is_file())


def _post(cluster: Cluster, key: str, body: bytes, ctype: str = MULTIPART) -> rawhttp.RawReply:
    headers = {**_auth(key), "Content-Type": ctype, "Content-Length": str(len(body))}
    return rawhttp.request(cluster.port, "POST", "/api/v1/tasks", headers, [body])


def test_refused_uploads_keep_no_file(cluster: Cluster) -> None:
    key = cluster.key("alice", "user")
    doc = ("files", "a.txt", b"the file of a refused request\n" * 100)
    refused = [
        [("task_type", None, b"document"), ("parameters", None, b"{not json"), doc],
        [("task_type", None, b"sing"), doc],
        [("task_type", None, b"document"), ("colour", None, b"blue"), doc],
        [("task_type", None, b"document"), ("priority", None, b"1000"), doc],
        [
            ("task_type", None, b"document"),
            ("parameters", None, json.dumps({"a": json.loads("[" * 40 + "]" * 40)}).encode()),
            doc,
        ],
    ]
    for parts in refused:
        reply = _post(cluster, key, rawhttp.multipart(parts, BOUNDARY))
        assert reply.status == 422, reply.body[:300]
        assert reply.json()["error"]["code"] == "invalid"
        assert _stored(cluster) == [], (parts[:2], _stored(cluster))
    # a body that ends before its closing boundary
    whole = rawhttp.multipart([("task_type", None, b"document"), doc], BOUNDARY)
    cut = whole[: -len(BOUNDARY) - 8]
    reply = _post(cluster, key, cut)
    assert reply.status == 400, reply.body[:300]
    error = reply.json()["error"]
    assert error["code"] == "bad_multipart" and "closing boundary" in error["message"]
    # a client that goes away in the middle of a file
    sock = socket.create_connection(("127.0.0.1", cluster.port))
    head = (
        f"POST /api/v1/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: {MULTIPART}\r\nContent-Length: {10 * len(whole)}\r\n\r\n"
    )
    sock.sendall(head.encode() + whole[:-100])
    time.sleep(0.5)
    sock.close()
    assert rawhttp.wait_until(lambda: _stored(cluster) == [], 10), _stored(cluster)
    assert cluster.user().get("/api/v1/tasks")["tasks"] == []
    # and the same upload, well formed, is stored once
    reply = _post(cluster, key, whole)
    assert reply.status == 201
    assert [p.name for p in _stored(cluster)] == [hashlib.sha256(doc[2]).hexdigest()]


def test_malformed_multipart_is_a_json_4xx_and_the_server_stays_up(cluster: Cluster) -> None:
    key = cluster.key("alice", "user")
    good = rawhttp.multipart([("task_type", None, b"document"), ("files", "a.txt", b"hi")])

    def part(headers: str, content: bytes = b"x") -> bytes:
        return f"--{BOUNDARY}\r\n{headers}\r\n\r\n".encode() + content + b"\r\n"

    task_type = part('Content-Disposition: form-data; name="task_type"', b"document")
    end = f"--{BOUNDARY}--\r\n".encode()
    many_headers = "\r\n".join(f"X-H{i}: v" for i in range(20))
    cases = [
        ("body with another boundary", good, "multipart/form-data; boundary=other", 400),
        ("garbage", b"\x00\xff" * 200, MULTIPART, 400),
        ("header without a colon", task_type + part("broken header line") + end, MULTIPART, 400),
        ("part without a name", task_type + part("X-Nothing: here") + end, MULTIPART, 400),
        (
            "5,000-character file name",
            task_type
            + part(f'Content-Disposition: form-data; name="files"; filename="{"n" * 5000}"')
            + end,
            MULTIPART,
            431,
        ),
        (
            "300-character file name",
            task_type
            + part(f'Content-Disposition: form-data; name="files"; filename="{"n" * 300}"')
            + end,
            MULTIPART,
            422,
        ),
        ("200 KB header", task_type + part("X-Big: " + "a" * 200_000) + end, MULTIPART, 431),
        (
            "20 headers in one part",
            task_type + part('Content-Disposition: form-data; name="x"\r\n' + many_headers) + end,
            MULTIPART,
            431,
        ),
        (
            "5,000-character boundary",
            good.replace(BOUNDARY.encode(), b"b" * 5000),
            "multipart/form-data; boundary=" + "b" * 5000,
            400,
        ),
        ("no boundary", good, "multipart/form-data", 400),
        ("empty body", b"", MULTIPART, 400),
    ]
    for name, body, ctype, status in cases:
        reply = _post(cluster, key, body, ctype)
        assert reply.status == status, (name, reply.status, reply.body[:300])
        error = reply.json()["error"]
        assert error["code"] and error["message"], name
        assert _stored(cluster) == [], (name, _stored(cluster))
    assert "Traceback" not in (cluster.root / "server" / "server.log").read_text()
    assert _post(cluster, key, good).status == 201


def _metric(cluster: Cluster, name: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(f"{cluster.url}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"{name} not in /metrics")


def test_unreferenced_and_abandoned_files_are_swept_after_the_grace(cluster_factory) -> None:
    cluster: Cluster = cluster_factory("--file-grace", "3")
    key = cluster.key("alice", "user")
    files = cluster.root / "server" / "files"
    kept = b"a file a task uses\n" * 50
    assert (
        _post(
            cluster,
            key,
            rawhttp.multipart([("task_type", None, b"document"), ("files", "kept.txt", kept)]),
        ).status
        == 201
    )
    kept_path = files / hashlib.sha256(kept).hexdigest()[:2] / hashlib.sha256(kept).hexdigest()
    # a server killed in the middle of an upload leaves its partial file in files/tmp
    sock = socket.create_connection(("127.0.0.1", cluster.port))
    body = rawhttp.multipart([("task_type", None, b"document"), ("files", "big", b"p" * 300_000)])
    sock.sendall(
        (
            f"POST /api/v1/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: {MULTIPART}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body[:200_000]
    )
    assert rawhttp.wait_until(lambda: any((files / "tmp").iterdir()), 10)
    time.sleep(0.3)
    cluster.server.kill()
    sock.close()
    partial = list((files / "tmp").iterdir())
    assert len(partial) == 1
    # ...and one killed between storing a file and recording its task leaves an orphan
    orphan = b"nobody refers to me\n" * 70
    digest = hashlib.sha256(orphan).hexdigest()
    (files / digest[:2]).mkdir(exist_ok=True)
    (files / digest[:2] / digest).write_bytes(orphan)
    reclaimable = partial[0].stat().st_size + len(orphan)
    cluster.restart_server()
    assert _metric(cluster, "morag_server_files_reclaimed_bytes_total") == 0
    assert rawhttp.wait_until(
        lambda: _metric(cluster, "morag_server_files_reclaimed_bytes_total") == reclaimable, 30
    ), _metric(cluster, "morag_server_files_reclaimed_bytes_total")
    assert not partial[0].exists() and not (files / digest[:2] / digest).exists()
    assert kept_path.exists()
    os.utime(kept_path, (0, 0))  # old, but referenced: never swept
    time.sleep(4)
    assert kept_path.exists()
    tasks = cluster.user("alice").get("/api/v1/tasks")["tasks"]
    assert [t["input_files"][0]["sha256"] for t in tasks] == [hashlib.sha256(kept).hexdigest()]


# ---- resumable uploads (/api/v1/uploads) and resumed downloads --------------------------


def _piece(
    cluster: Cluster, key: str, upload_id: str, offset: int, data: bytes
) -> requests.Response:
    return requests.patch(
        f"{cluster.url}/api/v1/uploads/{upload_id}",
        data=data,
        headers={**_auth(key), "Upload-Offset": str(offset)},
        timeout=30,
    )


def _offset(cluster: Cluster, key: str, upload_id: str) -> int:
    reply = requests.get(f"{cluster.url}/api/v1/uploads/{upload_id}", headers=_auth(key), timeout=5)
    assert reply.status_code == 200, reply.text
    return int(reply.json()["offset"])


def _settled_offset(cluster: Cluster, key: str, upload_id: str) -> int:
    """The offset once no request writes the upload any more (an empty piece is taken)."""
    for _ in range(200):
        offset = _offset(cluster, key, upload_id)
        if _piece(cluster, key, upload_id, offset, b"").status_code == 200:
            return offset
        time.sleep(0.05)
    raise AssertionError("the upload stayed busy")


def test_a_cut_off_upload_keeps_what_arrived_and_resumes_after_a_restart(cluster: Cluster) -> None:
    key = cluster.key("alice", "user")
    data = os.urandom(3_000_000)
    created = requests.post(
        f"{cluster.url}/api/v1/uploads",
        json={"name": "talk.ogg", "size": len(data)},
        headers=_auth(key),
        timeout=5,
    )
    assert created.status_code == 201, created.text
    upload_id = created.json()["upload_id"]
    assert created.json()["offset"] == 0
    # the connection drops 1.2 MB into a piece that declared the whole file
    sock = socket.create_connection(("127.0.0.1", cluster.port))
    sock.sendall(
        (
            f"PATCH /api/v1/uploads/{upload_id} HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {key}\r\nUpload-Offset: 0\r\n"
            f"Content-Length: {len(data)}\r\n\r\n"
        ).encode()
        + data[:1_200_000]
    )
    sock.close()
    # the server keeps what it had read when it saw the connection close (the bytes
    # still in its receive buffers are lost with the connection)
    kept = _settled_offset(cluster, key, upload_id)
    assert 0 < kept <= 1_200_000
    # another user does not see it; a task cannot use it yet
    other = cluster.key("bob", "user")
    assert (
        requests.get(
            f"{cluster.url}/api/v1/uploads/{upload_id}", headers=_auth(other), timeout=5
        ).status_code
        == 404
    )
    early = cluster.user("alice").session.post(
        f"{cluster.url}/api/v1/tasks",
        json={"task_type": "document", "uploads": [upload_id]},
        headers=_auth(key),
        timeout=5,
    )
    assert early.status_code == 409 and early.json()["error"]["code"] == "upload_incomplete"
    # a piece sent from the wrong place is refused and says where to start
    wrong = _piece(cluster, key, upload_id, 0, data[:10])
    assert wrong.status_code == 409, wrong.text
    assert wrong.json()["error"]["details"] == {"offset": kept}
    # the next piece, then a restart (the running hash is gone: the part is hashed again)
    assert _piece(cluster, key, upload_id, kept, data[kept:2_000_000]).json()["offset"] == 2_000_000
    cluster.restart_server()
    done = _piece(cluster, key, upload_id, 2_000_000, data[2_000_000:])
    assert done.status_code == 200 and done.json()["complete"], done.text
    # more than the declared size is refused
    assert _piece(cluster, key, upload_id, len(data), b"x").status_code == 413
    task = requests.post(
        f"{cluster.url}/api/v1/tasks",
        json={"task_type": "document", "uploads": [upload_id]},
        headers=_auth(key),
        timeout=5,
    )
    assert task.status_code == 201, task.text
    info = cluster.user("alice").get(f"/api/v1/tasks/{task.json()['task_id']}")
    [file] = info["input_files"]
    assert file["sha256"] == hashlib.sha256(data).hexdigest() and file["name"] == "talk.ogg"
    assert file["size"] == len(data)
    stored = cluster.root / "server" / "files" / file["sha256"][:2] / file["sha256"]
    assert stored.read_bytes() == data
    # the upload is used up, and nothing of it is left in the temp dir
    assert (
        requests.get(
            f"{cluster.url}/api/v1/uploads/{upload_id}", headers=_auth(key), timeout=5
        ).status_code
        == 404
    )
    assert list((cluster.root / "server" / "files" / "tmp").iterdir()) == []


def test_the_cli_upload_and_the_supervisor_download_resume_over_a_broken_link(
    cluster: Cluster, tmp_path: Path
) -> None:
    from cutproxy import CutProxy

    from morag_worker.cli.api import Api
    from morag_worker.client import WorkerClient
    from morag_worker.protocol import LeaseRequest, RegisterRequest

    data = os.urandom(5_000_000)
    path = tmp_path / "long.mp4"
    path.write_bytes(data)
    key = cluster.key("alice", "user")
    # the link drops twice during the file: 1.5 MB into the first connection, 1 MB into
    # the next (the proxy's connection 0 also carries the call that starts the upload)
    up = CutProxy(cluster.port, cuts=[1_500_000, 1_000_000], direction="up")
    try:
        task_id = Api(up.url, key).submit_file_resumable(path, "document", {}, retry_for_s=30)
    finally:
        up.close()
    offsets = [int(v) for v in up.header_values(b"PATCH", b"Upload-Offset")]
    # (a piece sent while the server still writes the cut-off one is refused as busy
    # and sent again: the same offset twice)
    assert offsets == sorted(offsets) and offsets[0] == 0, offsets
    assert 0 < sorted(set(offsets))[1] <= 1_500_000, offsets  # less: see the test above
    assert len(set(offsets)) == 3, offsets
    [file] = cluster.user("alice").get(f"/api/v1/tasks/{task_id}")["input_files"]
    assert file["sha256"] == hashlib.sha256(data).hexdigest()
    # the supervisor's client fetches it over a link that drops 2 MB into the file
    down = CutProxy(cluster.port, cuts=[2_000_000], direction="down")
    worker = WorkerClient(down.url, cluster.key("alice", "worker"), "w1")
    try:
        reply = worker.register(
            RegisterRequest(worker_id="w1", task_types=["document"]), retry_for_s=5
        )
        worker.set_instance(reply.instance_id)
        [task] = worker.lease(LeaseRequest(max_tasks=1, wait_seconds=10), retry_for_s=0).tasks
        dest = tmp_path / "fetched.mp4"
        worker.download(task.input_files[0], dest, retry_for_s=30)
    finally:
        worker.close()
        down.close()
    assert dest.read_bytes() == data
    ranges = down.header_values(b"GET", b"Range")
    assert len(ranges) == 1, ranges
    start = int(ranges[0].removeprefix(b"bytes=").split(b"-")[0])
    assert 0 < start <= 2_000_000


def test_an_abandoned_resumable_upload_is_swept_after_the_grace(cluster_factory) -> None:
    cluster: Cluster = cluster_factory("--file-grace", "2")
    key = cluster.key("alice", "user")
    created = requests.post(
        f"{cluster.url}/api/v1/uploads",
        json={"name": "left.bin", "size": 1000},
        headers=_auth(key),
        timeout=5,
    ).json()
    assert _piece(cluster, key, created["upload_id"], 0, b"x" * 400).json()["offset"] == 400
    tmp = cluster.root / "server" / "files" / "tmp"
    assert len(list(tmp.iterdir())) == 2  # its bytes and its metadata
    assert rawhttp.wait_until(lambda: list(tmp.iterdir()) == [], 20), list(tmp.iterdir())
    gone = requests.get(
        f"{cluster.url}/api/v1/uploads/{created['upload_id']}", headers=_auth(key), timeout=5
    )
    assert gone.status_code == 404 and "--file-grace" in gone.json()["error"]["message"]
