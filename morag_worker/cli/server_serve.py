"""``morag-server``'s serving half: listen first, then open the data, then serve.

The port is bound before the database is migrated or the first admin key written, so a
server that cannot listen (the port is taken) exits with status 2 and changes nothing.
"""

from __future__ import annotations

import errno
import signal
import socket
import sys

from morag_worker.server.state import ServerConfig


def _bind(host: str, port: int) -> socket.socket:
    """Bind the listening address before anything is written (a key, a schema), so a
    server that cannot serve changes nothing. Raises OSError."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def _cannot_listen(config: ServerConfig, exc: OSError) -> str:
    host = f"[{config.host}]" if ":" in config.host else config.host
    if exc.errno == errno.EADDRINUSE:
        advice = "the address is in use (another server on this port?); stop it or choose "
        advice += "another --port"
    else:
        advice = f"{exc.strerror or exc}; check --host and --port"
    return f"morag-server: cannot listen on {host}:{config.port}: {advice}"


def serve(config: ServerConfig) -> int:
    """Listen, build the app, serve until stopped; the exit status (2: could not start)."""
    import uvicorn

    from morag_worker.server.app import create_app
    from morag_worker.server.datadir import LayoutError
    from morag_worker.server.db import DatabaseUnavailable
    from morag_worker.server.migrate import SchemaError

    try:
        sock = _bind(config.host, config.port)
    except OSError as exc:
        print(_cannot_listen(config, exc), file=sys.stderr)
        return 2
    try:
        app = create_app(config)
    except (SchemaError, LayoutError, DatabaseUnavailable) as exc:
        sock.close()
        print(f"morag-server: {exc}", file=sys.stderr)
        return 2
    # uvicorn re-raises the stop signal after its graceful shutdown; with this handler in
    # place that re-raise is a no-op and a SIGTERM'd server exits 0, as systemd expects.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _signum, _frame: None)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            log_level="warning",
            access_log=False,
            log_config=None,  # keep our loguru routing; uvicorn's would replace it
            timeout_graceful_shutdown=5,
        )
    )
    server.run(sockets=[sock])
    return 0 if server.started else 2
