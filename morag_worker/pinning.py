"""HTTP connections that go only to addresses the URL guard has just checked.

DNS rebinding is the risk: a name resolves to a public address when the guard looks and
to a private one when the HTTP library connects. Re-resolving and comparing leaves a
window between the comparison and the connection; pinning leaves none. :class:`Pins`
holds, per ``(host, port)``, the addresses of the last :class:`~morag_worker.urlguard.
CheckedUrl` for it, and :func:`pin_pools` makes a urllib3 pool manager (the one inside a
``requests`` adapter) open every new connection to those addresses instead of resolving
the name. A host with no pinned addresses is refused: nothing reaches the network
without a check.

The URL keeps its host name, so the ``Host`` header, TLS SNI, certificate verification
and cookies all see the name, as they would without pinning.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any

from urllib3 import HTTPConnectionPool, HTTPSConnectionPool, PoolManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.util.connection import create_connection

from morag_worker.addresses import IPAddress
from morag_worker.urlguard import CheckedUrl


class Pins:
    """Checked addresses by ``(host, port)``; safe to share between threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._addresses: dict[tuple[str, int], tuple[IPAddress, ...]] = {}

    def hold(self, checked: CheckedUrl) -> None:
        """Pin ``checked.host`` (and its IDNA spelling) to the addresses just checked."""
        with self._lock:
            for name in _spellings(checked.host):
                self._addresses[(name, checked.port)] = checked.addresses

    def addresses(self, host: str, port: int) -> tuple[IPAddress, ...]:
        with self._lock:
            return self._addresses.get((host.strip("[]").rstrip(".").lower(), port), ())


def _spellings(host: str) -> set[str]:
    """The forms an HTTP library may use for ``host``: as given and IDNA-encoded."""
    names = {host}
    with contextlib.suppress(UnicodeError):  # not encodable: only the given form
        names.add(host.encode("idna").decode("ascii"))
    return names


def _connect(conn: HTTPConnection, pins: Pins) -> socket.socket:
    """``HTTPConnection._new_conn`` with the name's pinned addresses instead of DNS."""
    addresses = pins.addresses(conn.host, conn.port)
    if not addresses:
        raise NewConnectionError(conn, f"{conn.host} was not checked by the URL guard")
    error: Exception | None = None
    for address in addresses:  # the next one when an address does not answer
        try:
            return create_connection(
                (str(address), conn.port),
                conn.timeout,
                source_address=conn.source_address,
                socket_options=conn.socket_options,
            )
        except TimeoutError:
            error = ConnectTimeoutError(conn, f"connecting to {conn.host} timed out")
        except OSError as exc:
            error = NewConnectionError(conn, f"cannot connect to {conn.host}: {exc}")
    assert error is not None
    raise error


def pin_pools(manager: PoolManager, pins: Pins) -> None:
    """Make ``manager`` connect through ``pins`` for http and https (no proxies)."""

    class PinnedHTTPConnection(HTTPConnection):
        def _new_conn(self) -> socket.socket:
            return _connect(self, pins)

    class PinnedHTTPSConnection(HTTPSConnection):
        def _new_conn(self) -> socket.socket:
            return _connect(self, pins)

    class PinnedHTTPPool(HTTPConnectionPool):
        ConnectionCls = PinnedHTTPConnection

    class PinnedHTTPSPool(HTTPSConnectionPool):
        ConnectionCls = PinnedHTTPSConnection

    pools: Any = {"http": PinnedHTTPPool, "https": PinnedHTTPSPool}
    manager.pool_classes_by_scheme = pools
