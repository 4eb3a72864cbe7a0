"""The worker's HTTP client against a scripted local server: retries, Retry-After,
final errors, fencing, resumable downloads and checksum verification."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest
from _localhttp import Reply, serve

from morag_worker.client import LeaseLostError, ServerError, Unreachable, WorkerClient
from morag_worker.protocol import (
    HeartbeatRequest,
    InputFile,
    LeaseRequest,
    ResultRequest,
    TaskError,
)

JSON = {"Content-Type": "application/json"}


def _error(status: int, code: str, headers: dict[str, str] | None = None) -> Reply:
    body = json.dumps({"error": {"code": code, "message": f"{code} happened"}}).encode()
    return Reply(status, {**JSON, **(headers or {})}, body)


def test_retries_5xx_and_429_honouring_retry_after() -> None:
    replies = [
        _error(503, "busy"),
        _error(429, "slow_down", {"Retry-After": "0.3"}),
        Reply(200, JSON, b'{"tasks": []}'),
    ]
    seen: list[float] = []

    def lease(_handler: object) -> Reply:
        seen.append(time.monotonic())
        return replies[len(seen) - 1]

    with serve({"/api/v1/workers/w/lease": lease}) as srv:
        client = WorkerClient(srv.url(""), "key", "w")
        reply = client.lease(LeaseRequest(max_tasks=1), retry_for_s=30)
    assert reply.tasks == [] and len(seen) == 3
    assert seen[2] - seen[1] >= 0.3  # waited as told by Retry-After


def test_client_errors_are_final_and_409_is_lease_lost() -> None:
    calls: list[str] = []

    def bad(_h: object) -> Reply:
        calls.append("bad")
        return _error(422, "invalid")

    routes = {
        "/api/v1/workers/w/heartbeat": bad,
        "/api/v1/workers/w/tasks/t1/result": lambda _h: _error(409, "lease_lost"),
    }
    with serve(routes) as srv:
        client = WorkerClient(srv.url(""), "key", "w")
        with pytest.raises(ServerError) as info:
            client.heartbeat(HeartbeatRequest(), retry_for_s=30)
        assert info.value.status == 422 and "invalid happened" in str(info.value)
        assert calls == ["bad"]  # no retry on a 4xx
        body = ResultRequest(
            lease_token="t", status="failed", error=TaskError(type="x", message="y")
        )
        with pytest.raises(LeaseLostError):
            client.result("t1", body, retry_for_s=30)


def test_unreachable_server_gives_up_after_its_budget() -> None:
    client = WorkerClient("http://127.0.0.1:9", "key", "w")  # discard port: refused
    started = time.monotonic()
    with pytest.raises(Unreachable):
        client.heartbeat(HeartbeatRequest(), retry_for_s=1.0)
    assert time.monotonic() - started < 10


def test_download_resumes_with_range_and_verifies_sha256(tmp_path: Path) -> None:
    payload = bytes(range(256)) * 400
    digest = hashlib.sha256(payload).hexdigest()
    ranges: list[str] = []

    def serve_file(handler: object) -> Reply:
        header = handler.headers.get("Range")  # type: ignore[attr-defined]
        ranges.append(header or "")
        if header:
            start = int(header.split("=")[1].rstrip("-"))
            return Reply(
                206, {"Content-Range": f"bytes {start}-{len(payload) - 1}"}, payload[start:]
            )
        return Reply(200, {}, payload)

    with serve({f"/api/v1/files/{digest}": serve_file}) as srv:
        client = WorkerClient(srv.url(""), "key", "w")
        file = InputFile(
            file_id=digest,
            name="a.bin",
            size=len(payload),
            sha256=digest,
            url=f"/api/v1/files/{digest}",
        )
        dest = tmp_path / "a.bin"
        dest.write_bytes(payload[:1000])  # an interrupted earlier attempt
        client.download(file, dest, retry_for_s=10)
        assert dest.read_bytes() == payload and ranges == ["bytes=1000-"]
        wrong = file.model_copy(update={"sha256": "0" * 64})
        with pytest.raises(ServerError, match="does not match"):
            client.download(wrong, tmp_path / "b.bin", retry_for_s=10)
        assert not (tmp_path / "b.bin").exists()  # a corrupt download is not kept
