"""A tiny HTTP server on 127.0.0.1 for tests that fetch URLs (URL guard, web pages).

Routes map a path to a function ``(handler) -> Reply`` for GET, POST and PUT (a body
is in ``handler.request_body``); the server records the ``Host`` header of each
request so tests can see what a client actually sent.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    #: bytes are sent with a Content-Length; an iterable is sent without one (the
    #: connection closes at the end), each piece flushed, after ``delay_s``.
    body: bytes | Iterable[bytes] = b""
    delay_s: float = 0.0


Route = Callable[[BaseHTTPRequestHandler], Reply]


@dataclass
class LocalServer:
    port: int
    routes: dict[str, Route]
    hosts_seen: list[str]

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


def _make_handler(routes: dict[str, Route], hosts_seen: list[str]) -> type:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_GET(self) -> None:
            hosts_seen.append(self.headers.get("Host", ""))
            length = int(self.headers.get("Content-Length") or 0)
            self.request_body = self.rfile.read(length) if length else b""
            route = routes.get(self.path.split("?", 1)[0])
            reply = route(self) if route else Reply(404, {"Content-Type": "text/plain"}, b"no")
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            if isinstance(reply.body, bytes):
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)
                return
            self.end_headers()
            try:
                for piece in reply.body:
                    time.sleep(reply.delay_s)
                    self.wfile.write(piece)
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up on purpose (size or time limit)

        do_POST = do_GET
        do_PUT = do_GET

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@contextmanager
def serve(
    routes: dict[str, Route],
    tls: ssl.SSLContext | None = None,
    address: tuple[str, int] = ("127.0.0.1", 0),
) -> Iterator[LocalServer]:
    """Serve ``routes`` on ``address`` (an ephemeral port of 127.0.0.1 by default) for
    the duration of the block (HTTPS when ``tls`` is a server context)."""
    hosts_seen: list[str] = []
    server = ThreadingHTTPServer(address, _make_handler(routes, hosts_seen))
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    # A short poll interval keeps shutdown() (and so each test) fast.
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield LocalServer(server.server_address[1], routes, hosts_seen)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
