"""A TCP proxy on 127.0.0.1 that breaks connections after a number of bytes: the network
fault (a dropped link mid-transfer) that a real server and client cannot stage between
themselves. Everything else passes through unchanged."""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from dataclasses import dataclass, field


@dataclass
class CutProxy:
    """Forwards to ``upstream_port``. Connection number i (0-based) is cut once
    ``cuts[i]`` bytes have gone in the ``direction`` ("up": client to server, "down":
    server to client); connections beyond the list pass untouched. ``sent`` keeps what
    each connection sent upstream (requests, bodies and all: keep the bodies small)."""

    upstream_port: int
    cuts: list[int]
    direction: str = "up"
    sent: list[bytearray] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def header_values(self, method: bytes, header: bytes) -> list[bytes]:
        """``header`` of every ``method`` request that went upstream, in order."""
        found = []
        for stream in self.sent:
            for match in re.finditer(method + rb" /[^\r\n ]* HTTP/1\.1\r\n", stream):
                head = stream[match.end() : stream.find(b"\r\n\r\n", match.end())]
                for line in bytes(head).split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == header.lower():
                        found.append(value.strip())
        return found

    def close(self) -> None:
        self._stop.set()
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            index = len(self.sent)
            self.sent.append(bytearray())
            budget = self.cuts[index] if index < len(self.cuts) else None
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            up_budget = budget if self.direction == "up" else None
            down_budget = budget if self.direction == "down" else None
            threading.Thread(
                target=self._relay, args=(client, upstream, up_budget, index), daemon=True
            ).start()
            threading.Thread(
                target=self._relay, args=(upstream, client, down_budget, None), daemon=True
            ).start()

    def _relay(
        self, src: socket.socket, dst: socket.socket, budget: int | None, head: int | None
    ) -> None:
        sent = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if head is not None:
                    self.sent[head] += data
                if budget is not None and sent + len(data) >= budget:
                    dst.sendall(data[: budget - sent])
                    break  # the link drops here
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
