"""A TCP proxy that cuts the network three ways."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time

from morag_worker.cli.local import free_port


class TcpProxy:
    """A TCP proxy on 127.0.0.1 in front of one or more upstream ports (the first that
    accepts a connection gets it: a fail-over load balancer).

    Modes: ``up`` forwards; ``refuse`` closes the listening socket and every connection
    (new connections are refused); ``blackhole`` stops moving bytes and stops accepting
    (connections hang, data waits in the kernel's buffers and flows again when the cut
    ends, as after a routing outage); ``reset`` resets every established connection and
    every new one with a TCP RST.
    """

    def __init__(self, upstreams: list[int]) -> None:
        self.upstreams = upstreams
        self.port = free_port()
        self.mode = "up"
        self.lock = threading.Lock()
        self.pairs: set[tuple[socket.socket, socket.socket]] = set()
        self.effects = 0  # connections refused, closed, reset or held by a cut
        self.closed = False
        self.listener: socket.socket | None = None
        self._listen()
        threading.Thread(target=self._accept_loop, daemon=True, name="proxy-accept").start()

    def _listen(self) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(256)
        self.listener = sock

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @staticmethod
    def _rst(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            sock.close()

    def _accept_loop(self) -> None:
        while not self.closed:
            listener = self.listener
            if self.mode == "blackhole" or listener is None:
                time.sleep(0.02)  # new connections wait in the backlog: they hang
                continue
            try:
                ready, _, _ = select.select([listener], [], [], 0.1)
                if not ready:
                    continue
                client, _ = listener.accept()
            except (OSError, ValueError):
                continue
            if self.mode == "reset":
                self.effects += 1
                self._rst(client)
                continue
            upstream = self._connect()
            if upstream is None:
                self._rst(client)
                continue
            pair = (client, upstream)
            with self.lock:
                self.pairs.add(pair)
            threading.Thread(target=self._pump, args=(pair,), daemon=True).start()

    def _connect(self) -> socket.socket | None:
        for port in self.upstreams:
            with contextlib.suppress(OSError):
                return socket.create_connection(("127.0.0.1", port), timeout=2)
        return None

    def _pump(self, pair: tuple[socket.socket, socket.socket]) -> None:
        client, upstream = pair
        other = {client: upstream, upstream: client}
        try:
            while not self.closed and pair in self.pairs:
                if self.mode == "blackhole":
                    time.sleep(0.02)
                    continue
                ready, _, _ = select.select([client, upstream], [], [], 0.1)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    other[sock].sendall(data)
        except (OSError, ValueError):
            pass
        finally:
            with self.lock:
                self.pairs.discard(pair)
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.close()

    def set_mode(self, mode: str) -> None:
        with self.lock:
            pairs = list(self.pairs)
            if mode in ("refuse", "reset"):
                self.pairs.clear()
            self.mode = mode
            if mode == "refuse" and self.listener is not None:
                self.listener.close()
                self.listener = None
                self.effects += 1
            if mode == "up" and self.listener is None:
                self._listen()
        if mode == "refuse":
            for pair in pairs:
                self.effects += 1
                for sock in pair:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                        sock.close()
        elif mode == "reset":
            for client, upstream in pairs:
                self.effects += 1
                self._rst(client)
                self._rst(upstream)
        elif mode == "blackhole":
            self.effects += len(pairs)

    def close(self) -> None:
        self.closed = True
        with self.lock:
            if self.listener is not None:
                self.listener.close()
            pairs = list(self.pairs)
            self.pairs.clear()
        for pair in pairs:
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.close()
