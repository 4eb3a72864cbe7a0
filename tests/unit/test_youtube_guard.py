"""Every request of a youtube task, redirects included, passes the URL guard first.

yt-dlp fetches pages, captions and media itself; the processor routes all of it through
the guard (checked after DNS, on every hop, on a connection pinned to the checked
address). Private targets here are canaries on 127.0.0.2 that record any connection;
"public" hosts are names that a patched resolver maps onto 127.0.0.1 and that the
allow-list admits, standing in for sites on the internet (which tests must not reach).
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("yt_dlp", reason="pip install morag-worker[youtube]")

from _localhttp import LocalServer, Reply, Route, serve

from morag_worker.errors import BadInput, TaskFailure
from morag_worker.models.cache import ModelCache
from morag_worker.processors.base import TaskContext
from morag_worker.processors.settings import ProcessorSettings
from morag_worker.processors.youtube import YoutubeProcessor

CANARY_IP = "127.0.0.2"
PAGE = Reply(200, {"Content-Type": "text/html"}, b"<html><body><p>no video</p></body></html>")


class Canary:
    """A listening socket on 127.0.0.2 that tells whether anything connected to it."""

    def __init__(self, port: int = 0) -> None:
        self.sock = socket.socket()
        self.sock.bind((CANARY_IP, port))
        self.sock.listen(16)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]

    def contacted(self) -> bool:
        try:
            conn, _ = self.sock.accept()
        except BlockingIOError:
            return False
        conn.close()
        return True

    def close(self) -> None:
        self.sock.close()


@contextmanager
def canary(port: int = 0) -> Iterator[Canary]:
    trap = Canary(port)
    try:
        yield trap
    finally:
        trap.close()


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Host name → the answers its successive lookups give (the last one repeats)."""
    answers: dict[str, list[str]] = {}
    real = socket.getaddrinfo

    def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and host in answers:
            queue = answers[host]
            address = queue.pop(0) if len(queue) > 1 else queue[0]
            return real(address, port, *args, **kwargs)
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return answers


def _process(tmp_path: Path, url: str, allow_list: str) -> None:
    settings = ProcessorSettings(url_allow_list=allow_list, download_timeout_s=60)
    ctx = TaskContext.local(
        "youtube", parameters={"url": url}, settings=settings, work_dir=tmp_path
    )
    YoutubeProcessor().process(ctx)


def _site(routes: dict[str, Route]) -> Any:
    return serve(routes)


def test_redirect_to_a_private_address_is_refused_before_it_is_contacted(
    tmp_path: Path, resolver: dict[str, list[str]]
) -> None:
    resolver["video.test"] = ["127.0.0.1"]
    with canary() as trap:
        routes = {"/start": lambda _h: Reply(302, {"Location": f"http://{CANARY_IP}:{trap.port}/"})}
        with _site(routes) as site:
            with pytest.raises(BadInput, match=r"127\.0\.0\.2, a loopback address") as info:
                _process(tmp_path, site.url("/start", host="video.test"), "video.test")
            assert site.hosts_seen == [f"video.test:{site.port}"]
        assert not trap.contacted(), "the private address was contacted"
    assert not info.value.retryable


def test_redirect_through_a_second_name_is_checked_after_dns(
    tmp_path: Path, resolver: dict[str, list[str]]
) -> None:
    """The redirect names a host, not an address: the guard must resolve it and refuse."""
    resolver["video.test"] = ["127.0.0.1"]
    resolver["cdn.test"] = [CANARY_IP]
    with canary() as trap:
        target = f"http://cdn.test:{trap.port}/media.ogg"
        routes = {"/watch": lambda _h: Reply(301, {"Location": target})}
        with _site(routes) as site, pytest.raises(BadInput, match=r"127\.0\.0\.2"):
            _process(tmp_path, site.url("/watch", host="video.test"), "video.test")
        assert not trap.contacted()


def test_media_download_redirect_is_refused_before_it_is_contacted(
    tmp_path: Path, resolver: dict[str, list[str]]
) -> None:
    """The media URL answers the extractor, then redirects the downloader."""
    resolver["video.test"] = ["127.0.0.1"]
    calls = {"n": 0}
    with canary() as trap:

        def media(_h: Any) -> Reply:
            calls["n"] += 1
            if calls["n"] == 1:  # the extractor's look: a direct audio file
                return Reply(200, {"Content-Type": "audio/ogg"}, b"OggS" + b"\0" * 400)
            return Reply(302, {"Location": f"http://{CANARY_IP}:{trap.port}/x.ogg"})

        with _site({"/clip.ogg": media}) as site:
            with pytest.raises(BadInput, match=r"127\.0\.0\.2"):
                _process(tmp_path, site.url("/clip.ogg", host="video.test"), "video.test")
            assert calls["n"] >= 2, "the download never started; the test proves nothing"
        assert not trap.contacted(), "the downloader followed the redirect"


def test_dns_rebinding_cannot_redirect_the_connection(
    tmp_path: Path, resolver: dict[str, list[str]]
) -> None:
    """The first lookup says 127.0.0.1 (allowed); every later one says 127.0.0.2.

    Whatever is looked up later is either checked again (and refused) or not used:
    the canary behind the second answer must never see a connection.
    """
    with _site({"/": lambda _h: PAGE}) as site, canary(site.port) as trap:
        resolver["rebind.test"] = ["127.0.0.1", CANARY_IP]
        with pytest.raises(BadInput, match=r"127\.0\.0\.2|Unsupported URL"):
            _process(tmp_path, site.url("/", host="rebind.test"), "127.0.0.1/32")
        assert not trap.contacted(), "the connection went to a second DNS answer"


def _refusal(tmp_path: Path, site: LocalServer, target: str) -> str:
    site.routes["/go"] = lambda _h: Reply(302, {"Location": target})
    with pytest.raises(TaskFailure) as info:
        _process(tmp_path, site.url("/go", host="video.test"), "video.test")
    return info.value.message


def test_errors_do_not_tell_what_an_internal_address_answered(
    tmp_path: Path, resolver: dict[str, list[str]]
) -> None:
    """Open port with a banner, open port answering 404, closed port: one message."""
    resolver["video.test"] = ["127.0.0.1"]
    banner = Reply(200, {"Content-Type": "text/html", "Server": "secret-db/1.0"}, b"<p>hi</p>")
    with (
        _site({}) as site,
        serve({"/": lambda _h: banner}, address=(CANARY_IP, 0)) as internal,
        canary() as closed_probe,
    ):
        closed_port = closed_probe.port
        closed_probe.close()  # nothing listens there any more
        messages = [
            _refusal(tmp_path, site, f"http://{CANARY_IP}:{internal.port}/"),
            _refusal(tmp_path, site, f"http://{CANARY_IP}:{internal.port}/missing"),
            _refusal(tmp_path, site, f"http://{CANARY_IP}:{closed_port}/"),
        ]
        assert internal.hosts_seen == []
    shapes = {re.sub(r":\d+/\w*", ":PORT/", m) for m in messages}
    assert len(shapes) == 1, messages
    assert not re.search(r"secret-db|404|refused|Errno", messages[0])


def test_each_request_connects_to_the_address_its_check_saw(
    tmp_path: Path, resolver: dict[str, list[str]]
) -> None:
    """One request, one lookup: the connection is pinned to what the guard checked."""
    from morag_worker.processors.youtube import _GuardedYDL
    from morag_worker.urlguard import UrlGuard

    settings = ProcessorSettings(download_timeout_s=60)
    ctx = TaskContext("t1", "youtube", {}, [], [], tmp_path, "cpu", ModelCache(), settings)
    with _site({"/": lambda _h: PAGE}) as site, canary(site.port) as trap:
        resolver["rebind.test"] = ["127.0.0.1", CANARY_IP]
        guard = UrlGuard.from_settings(False, "127.0.0.1/32")
        with _GuardedYDL({"quiet": True}, guard, ctx) as ydl:
            body = ydl.urlopen(site.url("/", host="rebind.test")).read()
        assert b"no video" in body
        assert site.hosts_seen == [f"rebind.test:{site.port}"]
        assert not trap.contacted()


@contextmanager
def banner_server(banner: bytes) -> Iterator[int]:
    """A TCP service on 127.0.0.1 that greets every connection with ``banner`` and hangs
    up, as SSH or a database would."""
    import threading

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    stop = threading.Event()

    def greet() -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                conn.sendall(banner)

    thread = threading.Thread(target=greet, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        sock.close()


def test_transport_errors_on_an_allowed_host_say_nothing_of_the_answer(
    tmp_path: Path, resolver: dict[str, list[str]]
) -> None:
    """Even where the operator allows a host, its ports are not a scanner's playground."""
    from morag_worker.processors.youtube_net import NETWORK_ERROR

    resolver["intranet.test"] = ["127.0.0.1"]
    with canary() as closed_probe:
        closed_port = closed_probe.port
    messages = []
    with banner_server(b"SSH-2.0-OpenSSH_9.2p1 secret-host\r\n") as ssh_port:
        for port in (ssh_port, closed_port):
            with pytest.raises(TaskFailure) as info:
                _process(tmp_path, f"http://intranet.test:{port}/", "intranet.test")
            assert info.value.retryable
            messages.append(info.value.message)
    assert messages == [NETWORK_ERROR, NETWORK_ERROR]
