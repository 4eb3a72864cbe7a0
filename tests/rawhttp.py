"""HTTP/1.1 over a plain socket, for requests no ordinary client sends: bodies that stall
or trickle, broken multipart, lying Content-Length headers. Talks only to 127.0.0.1."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RawReply:
    status: int
    headers: dict[str, str]
    body: bytes
    #: Body bytes the client had sent when the reply arrived.
    sent: int
    #: The server closed the connection after the reply.
    closed: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body)


def _read_reply(sock: socket.socket, sent: int) -> RawReply:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed before a reply (got {data[:200]!r})")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    closed = False
    sock.settimeout(0.5)
    try:
        closed = sock.recv(1) == b""
    except (TimeoutError, ConnectionResetError):
        closed = headers.get("connection", "") == "close"
    return RawReply(status, headers, body[:length], sent, closed)


def request(
    port: int,
    method: str,
    path: str,
    headers: dict[str, str],
    body: Iterable[bytes] = (),
    pause_s: float = 0.0,
    timeout_s: float = 60.0,
) -> RawReply:
    """Send a request whose body arrives in the given pieces, ``pause_s`` apart; return the
    reply as soon as the server sends one (even before the body is complete)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
    try:
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        sock.sendall(head.encode("latin-1"))
        sent = 0
        for piece in body:
            if pause_s:
                sock.settimeout(pause_s)
                try:
                    early = sock.recv(65536, socket.MSG_PEEK)
                except TimeoutError:
                    early = None
                sock.settimeout(timeout_s)
                if early is not None:
                    break  # the server answered (or closed) before the body was complete
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(piece)
        sock.settimeout(timeout_s)
        return _read_reply(sock, sent)
    finally:
        sock.close()


def trickle(data: bytes, piece_bytes: int = 1) -> Iterable[bytes]:
    for start in range(0, len(data), piece_bytes):
        yield data[start : start + piece_bytes]


def multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "b0undary") -> bytes:
    """A well-formed multipart body from (field name, file name or None, content)."""
    out = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
        out += content + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def wait_until(predicate: Any, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    return predicate()
