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
