"""The supervisor's HTTP endpoint: ``/health``, ``/ready``, ``/status``, ``/metrics``.

Runs in its own thread on a standard-library threading server: it must answer while the
main loop is busy, and it needs nothing an extra dependency would bring. Handlers only
read snapshots the supervisor provides; they never touch children or the server.

- ``/health`` — liveness, the seed's JSON (status, worker_id, worker_type, uptime,
  active_tasks); 503 when the main loop has not ticked recently.
- ``/ready`` — 200 when registered, at least one child is healthy, and not draining.
- ``/status`` — JSON detail: children, devices, tasks in flight, caches, recent errors.
- ``/metrics`` — Prometheus text from the supervisor's registry.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


class HealthServer:
    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        health: Callable[[], tuple[int, dict[str, Any]]],
        ready: Callable[[], tuple[int, dict[str, Any]]],
        status: Callable[[], dict[str, Any]],
    ) -> None:
        routes: dict[str, Callable[[], tuple[int, str, bytes]]] = {
            "/health": lambda: _json(*health()),
            "/ready": lambda: _json(*ready()),
            "/status": lambda: _json(200, status()),
            "/metrics": lambda: (200, CONTENT_TYPE_LATEST, generate_latest(registry)),
        }

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                route = routes.get(self.path.split("?", 1)[0])
                if route is None:
                    code, ctype, body = _json(404, {"error": f"no such path {self.path}"})
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
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="health", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _json(code: int, payload: dict[str, Any]) -> tuple[int, str, bytes]:
    return code, "application/json", json.dumps(payload, default=str).encode()
