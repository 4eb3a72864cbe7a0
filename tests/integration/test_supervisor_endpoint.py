"""The supervisor's endpoint: who may read what, and startup failures that must stop it."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import requests
from harness import Cluster, log_lines

from morag_worker.cli.local import Proc, free_port


def _other_address() -> str:
    """An address of this machine that is not loopback (requests to it stay here)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: UDP connect picks a route
            address = str(probe.getsockname()[0])
        except OSError:
            address = ""
    if not address or address.startswith("127."):
        pytest.skip("this machine has no non-loopback IPv4 address")
    return address


def test_status_answers_loopback_or_a_token_holder(cluster: Cluster) -> None:
    address = _other_address()
    _, health = cluster.supervisor(
        cluster.key_file("alice"),
        "--cpu-procs",
        "1",
        "--health-host",
        "0.0.0.0",
        "--status-token",
        "s3cret-token",
    )
    remote = f"http://{address}:{health}"
    assert requests.get(f"http://127.0.0.1:{health}/status", timeout=5).status_code == 200
    refused = requests.get(f"{remote}/status", timeout=5)
    assert refused.status_code == 403 and "--status-token" in refused.json()["error"]
    wrong = requests.get(f"{remote}/status", headers={"Authorization": "Bearer nope"}, timeout=5)
    assert wrong.status_code == 403
    allowed = requests.get(
        f"{remote}/status", headers={"Authorization": "Bearer s3cret-token"}, timeout=5
    )
    assert allowed.status_code == 200 and allowed.json()["children"]
    for path in ("/health", "/ready", "/metrics"):  # probes and scrapes need no token
        assert requests.get(f"{remote}{path}", timeout=5).status_code == 200


def test_the_endpoint_binds_loopback_by_default(cluster: Cluster) -> None:
    address = _other_address()
    health = free_port()
    proc = Proc(
        [
            *_supervisor(cluster, cluster.key_file("alice")),
            "--health-port",
            str(health),
            "--cpu-procs",
            "1",
        ],
        cluster.root / "default-host.log",
    )
    cluster.supervisors.append(proc)
    from morag_worker.cli.local import wait_http

    wait_http(f"http://127.0.0.1:{health}/ready", 120, proc.proc)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://{address}:{health}/health", timeout=5)


def test_a_taken_health_port_stops_the_supervisor(cluster: Cluster, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        temp = tmp_path / "tmp"
        temp.mkdir()
        proc = Proc(
            [*_supervisor(cluster, cluster.key_file("alice")), "--health-port", str(port)],
            tmp_path / "taken.log",
            {"TMPDIR": str(temp), "MORAG_LOG_FORMAT": "json"},
        )
        assert proc.proc.wait(timeout=60) == 2
    errors = [line["message"] for line in log_lines(proc) if line["level"] == "ERROR"]
    assert any(f"cannot serve the health endpoint on 127.0.0.1:{port}" in m for m in errors)
    assert list(temp.iterdir()) == []  # its temporary work dir is gone too


def test_a_refused_key_leaves_no_work_dir_behind(cluster: Cluster, tmp_path: Path) -> None:
    key = tmp_path / "bogus.key"
    key.write_text("mrg_000000000000_" + "x" * 43)
    temp = tmp_path / "tmp"
    temp.mkdir()
    proc = Proc(
        [*_supervisor(cluster, key), "--health-port", "0"],
        tmp_path / "refused.log",
        {"TMPDIR": str(temp), "MORAG_LOG_FORMAT": "json"},
    )
    assert proc.proc.wait(timeout=60) == 2
    assert list(temp.iterdir()) == []


def _supervisor(cluster: Cluster, key: Path) -> list[str]:
    import sys

    return [
        sys.executable,
        "-m",
        "morag_worker.cli.supervisor",
        "--server-url",
        cluster.url,
        "--api-key-file",
        str(key),
        "--threads-per-proc",
        "1",
        "--worker-id",
        f"endpoint-{os.getpid()}-{free_port()}",
    ]
