"""The supervisor's HTTP endpoint: ``/health``, ``/ready``, ``/status``, ``/metrics``.

Runs in its own thread on a standard-library threading server: it must answer while the
main loop is busy, and it needs nothing an extra dependency would bring. Handlers only
read snapshots the supervisor provides; they never touch children or the server.

- ``/health`` — liveness, the seed's JSON (status, worker_id, worker_type, uptime,
  active_tasks); 503 when the main loop has not ticked recently.
- ``/ready`` — 200 when registered, at least one child is healthy, and not draining.
- ``/status`` — JSON detail: children, devices, tasks in flight, caches, recent errors.
  It names tasks and their errors, so it answers loopback callers, and other hosts only
  with ``Authorization: Bearer <--status-token>`` (403 otherwise).
- ``/metrics`` — Prometheus text from the supervisor's registry.

The endpoint binds ``--health-host`` (127.0.0.1 by default; containers set 0.0.0.0 so
that probes and scrapes reach it). A port that cannot be bound raises ``OSError``.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

#: How often the serving thread looks for a shutdown request; requests themselves are
#: answered at once. Bounds how long stopping the endpoint takes, not how fast it is.
SHUTDOWN_POLL_S = 2.0


class HealthServer:
    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        health: Callable[[], tuple[int, dict[str, Any]]],
        ready: Callable[[], tuple[int, dict[str, Any]]],
        status: Callable[[], dict[str, Any]],
        status_token: str = "",
    ) -> None:
        routes: dict[str, Callable[[], tuple[int, str, bytes]]] = {
            "/health": lambda: _json(*health()),
            "/ready": lambda: _json(*ready()),
            "/status": lambda: _json(200, status()),
            "/metrics": lambda: (200, CONTENT_TYPE_LATEST, generate_latest(registry)),
        }

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                route = routes.get(path)
                if route is None:
                    code, ctype, body = _json(404, {"error": f"no such path {path[:200]}"})
                elif path == "/status" and not _may_read_status(self, status_token):
                    code, ctype, body = _json(
                        403,
                        {
                            "error": "/status names tasks and errors: it answers loopback "
                            "callers, or others with 'Authorization: Bearer <token>' when "
                            "the supervisor runs with --status-token"
                        },
                    )
                else:
                    code, ctype, body = route()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # scrapes every few seconds would drown the log

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(
            target=self.httpd.serve_forever,
            kwargs={"poll_interval": SHUTDOWN_POLL_S},
            name="health",
            daemon=True,
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _may_read_status(handler: BaseHTTPRequestHandler, token: str) -> bool:
    try:
        if ipaddress.ip_address(handler.client_address[0]).is_loopback:
            return True
    except ValueError:
        pass
    if not token:
        return False
    scheme, _, given = handler.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token)


def _json(code: int, payload: dict[str, Any]) -> tuple[int, str, bytes]:
    return code, "application/json", json.dumps(payload, default=str).encode()
