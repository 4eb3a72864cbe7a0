"""sd_notify messages, read from a real unix datagram socket the test creates (as
systemd's would be), through a path and through the abstract namespace."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from morag_worker.observability import sdnotify

REPO = Path(__file__).resolve().parents[2]


class Listener:
    """A bound datagram socket standing in for systemd's notification socket."""

    def __init__(self, sock: socket.socket, env_value: str) -> None:
        self.sock = sock
        self.env_value = env_value

    def receive(self) -> list[str]:
        data = self.sock.recv(4096)
        return data.decode().split("\n")

    def nothing_pending(self) -> bool:
        self.sock.setblocking(False)
        try:
            self.sock.recv(4096)
        except BlockingIOError:
            return True
        finally:
            self.sock.setblocking(True)
        return False


@pytest.fixture(params=["path", "abstract"])
def listener(request, monkeypatch) -> Iterator[Listener]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.settimeout(10)
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:  # short: sun_path holds 108 bytes
        if request.param == "path":
            address = os.path.join(tmp, "notify")
            sock.bind(address)
            env_value = address
        else:
            name = f"morag-test-notify-{os.getpid()}-{id(sock)}"
            sock.bind("\0" + name)
            env_value = "@" + name
        monkeypatch.setenv("NOTIFY_SOCKET", env_value)
        yield Listener(sock, env_value)
        sock.close()


def test_each_helper_sends_its_datagram(listener):
    assert sdnotify.ready()
    assert listener.receive() == ["READY=1"]
    assert sdnotify.watchdog()
    assert listener.receive() == ["WATCHDOG=1"]
    assert sdnotify.status("busy 1/2, done 7")
    assert listener.receive() == ["STATUS=busy 1/2, done 7"]
    assert sdnotify.stopping("draining 1 task")
    assert listener.receive() == ["STOPPING=1", "STATUS=draining 1 task"]
    assert sdnotify.extend_timeout(30_000_000)
    assert listener.receive() == ["EXTEND_TIMEOUT_USEC=30000000"]


def test_reloading_carries_a_monotonic_timestamp(listener):
    assert sdnotify.reloading()
    lines = listener.receive()
    assert lines[0] == "RELOADING=1"
    key, value = lines[1].split("=")
    assert key == "MONOTONIC_USEC" and int(value) > 0


def test_status_text_stays_one_line(listener):
    sdnotify.ready("children warm\ncapacity 2")
    assert listener.receive() == ["READY=1", "STATUS=children warm capacity 2"]


def test_a_separate_process_notifies_through_the_inherited_variable(listener):
    code = "from morag_worker.observability import sdnotify; raise SystemExit(not sdnotify.ready())"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, cwd=REPO)
    assert listener.receive() == ["READY=1"]


def test_no_socket_means_no_op(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.ready() is False
    assert sdnotify.watchdog() is False


def test_a_vanished_socket_is_not_an_error(monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", "/tmp/morag-no-such-socket/notify")
    assert sdnotify.status("x") is False
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")
    assert sdnotify.status("x") is False


def test_extend_timeout_rejects_nonsense(listener):
    with pytest.raises(ValueError, match="positive"):
        sdnotify.extend_timeout(0)
    assert listener.nothing_pending()


def test_watchdog_interval(monkeypatch):
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert sdnotify.watchdog_interval_s() is None
    monkeypatch.setenv("WATCHDOG_USEC", "60000000")
    assert sdnotify.watchdog_interval_s() == 30.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert sdnotify.watchdog_interval_s() == 30.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))  # meant for another process
    assert sdnotify.watchdog_interval_s() is None
    monkeypatch.delenv("WATCHDOG_PID")
    monkeypatch.setenv("WATCHDOG_USEC", "garbage")
    assert sdnotify.watchdog_interval_s() is None
