"""What operators see: sd_notify datagrams on a real NOTIFY_SOCKET, /metrics parsed with
prometheus_client's parser after a run, /status and /ready."""

from __future__ import annotations

import json
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from faultkit import SERVER_ARGS, metrics, ready, start, submit
from harness import Cluster, status, submit_noop, wait_for

#: WATCHDOG_USEC passed in: systemd's watchdog at 1 s, so pings every 0.5 s.
WATCHDOG_USEC = 1_000_000


class NotifySocket:
    """A unix datagram socket standing in for systemd's: records every datagram."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while not self.stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.messages.append((time.monotonic(), data.decode()))

    def lines(self) -> list[str]:
        return [line for _, text in list(self.messages) for line in text.splitlines()]

    def times_of(self, line: str) -> list[float]:
        return [t for t, text in list(self.messages) if line in text.splitlines()]

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.sock.close()


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    directory = Path(tempfile.mkdtemp(prefix="notify-", dir="/tmp"))  # short: AF_UNIX paths
    sock = NotifySocket(directory / "n.sock")
    yield sock
    sock.close()


def test_sd_notify_metrics_status_and_children_environment(
    cluster_factory: Callable[..., Cluster], notify_socket: NotifySocket
) -> None:
    cluster = cluster_factory(*SERVER_ARGS)
    user = cluster.user()
    started = time.time()
    proc, health = start(
        cluster,
        cluster.key_file("alice"),
        "--cpu-procs",
        "1",
        env={"NOTIFY_SOCKET": str(notify_socket.path), "WATCHDOG_USEC": str(WATCHDOG_USEC)},
    )
    wait_for(lambda: "READY=1" in notify_socket.lines(), 30, "READY=1")
    wait_for(lambda: len(notify_socket.times_of("WATCHDOG=1")) >= 3, 30, "WATCHDOG=1 pings")
    assert any(line.startswith("STATUS=busy 0/1") for line in notify_socket.lines())

    # The child sees neither systemd's socket nor its watchdog.
    env = submit(user, "envcheck")
    assert user.wait(env, 30)["state"] == "completed"
    seen = json.loads(user.get(f"/api/v1/tasks/{env}/result")["result"]["content"])
    assert seen["NOTIFY_SOCKET"] is None and seen["WATCHDOG_USEC"] is None
    for n in range(3):
        assert user.wait(submit_noop(user, echo=str(n)), 30)["state"] == "completed"

    m = metrics(health)
    assert m[("morag_worker_tasks_total", (("outcome", "completed"), ("task_type", "noop")))] == 3
    assert (
        m[("morag_worker_tasks_total", (("outcome", "completed"), ("task_type", "envcheck")))] == 1
    )
    restart_reasons = {
        dict(labels)["reason"]: value
        for (name, labels), value in m.items()
        if name == "morag_worker_child_restarts_total"
    }
    assert set(restart_reasons) == {
        "crash",
        "killed",
        "cancel",
        "memory",
        "timeout",
        "max_tasks",
        "reload",
        "unresponsive",
        "cuda_oom",
        "cuda_fatal",
        "boot",
        "exit",
    }
    assert set(restart_reasons.values()) == {0.0}
    last_lease = m[("morag_worker_last_lease_success_timestamp_seconds", ())]
    assert started <= last_lease <= time.time()
    assert m[("morag_worker_tasks_in_flight", ())] == 0
    assert m[("morag_worker_capacity", ())] == 1
    assert m[("morag_worker_child_memory_rss_bytes", (("child", "cpu0"),))] > 10 * 2**20
    assert m[("morag_worker_lease_lost_total", ())] == 0
    lease_calls = sum(
        v
        for (name, labels), v in m.items()
        if name == "morag_worker_server_requests_total" and ("endpoint", "lease") in labels
    )
    assert lease_calls >= 4
    info = [labels for (name, labels), v in m.items() if name == "morag_worker_info" and v == 1]
    assert info and dict(info[0])["worker_id"]

    body = status(health)
    assert body["children"][0]["rss_bytes"] > 0 and body["devices"] == []
    assert body["done"] == 4 and body["recent_errors"] == []
    assert ready(health)[0] == 200

    # Pings are throttled to half of WatchdogSec, never one per loop tick.
    pings = notify_socket.times_of("WATCHDOG=1")
    assert (len(pings) - 1) * WATCHDOG_USEC / 2e6 <= pings[-1] - pings[0] + 0.1

    # A drain with a task running: STOPPING=1, then the stop timeout extended meanwhile.
    running = submit_noop(user, sleep_s=1.5)
    wait_for(lambda: status(health)["children"][0]["task_id"] == running, 30, "task running")
    proc.signal(signal.SIGTERM)
    assert proc.proc.wait(timeout=60) == 0
    lines = notify_socket.lines()
    assert "STOPPING=1" in lines
    assert any(line.startswith("STATUS=draining: busy 1/1") for line in lines)
    assert any(line.startswith("EXTEND_TIMEOUT_USEC=") for line in lines)
    assert user.get(f"/api/v1/tasks/{running}")["state"] == "completed"
