"""The user side of the HTTP API, as the ``morag`` CLI and the demo use it."""

from __future__ import annotations

import json
import mimetypes
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import requests

from morag_worker.connection import describe_unreachable, server_url_problem

TERMINAL = {"completed", "failed", "dead", "cancelled"}
#: Upload pieces: large enough for throughput, small enough to keep memory flat.
UPLOAD_CHUNK_BYTES = 1 << 20


class ApiFailure(Exception):
    """A call failed; the message says why (the server's own words when it gave some).

    ``status`` is the HTTP status of a morag-server's error answer; None when there was
    no answer, or an answer that was not a morag-server's."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def read_key(key: str, key_file: str) -> str:
    """The key given directly, else read from ``key_file``; ApiFailure when neither works."""
    if key:
        return key.strip()
    if key_file:
        try:
            key = Path(key_file).read_text().strip()
        except OSError as exc:
            raise ApiFailure(f"--api-key-file {key_file}: {exc.strerror}") from None
        if not key:
            raise ApiFailure(f"--api-key-file {key_file}: the file is empty")
        return key
    raise ApiFailure("no API key: set MORAG_API_KEY or pass --api-key / --api-key-file")


def _multipart(path: Path, fields: dict[str, str], boundary: str) -> Iterator[bytes]:
    """A multipart body streamed from disk, so a 2 GB upload never sits in memory."""
    for name, value in fields.items():
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        ).encode()
    ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    safe_name = path.name.replace('"', "_")
    yield (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
        f'filename="{safe_name}"\r\nContent-Type: {ctype}\r\n\r\n'
    ).encode()
    with path.open("rb") as handle:
        while chunk := handle.read(UPLOAD_CHUNK_BYTES):
            yield chunk
    yield f"\r\n--{boundary}--\r\n".encode()


def check_server_url(url: str) -> str:
    """The server's base URL without a trailing slash; ApiFailure saying what to pass."""
    problem = server_url_problem(url)
    if problem is not None:
        raise ApiFailure(problem)
    return url.strip().rstrip("/")


def _unreachable(base: str, exc: requests.RequestException) -> ApiFailure:
    """What to check when a call did not get an answer, in one line."""
    return ApiFailure(describe_unreachable(base, exc))


class Api:
    def __init__(self, server_url: str, api_key: str, timeout_s: float = 60.0) -> None:
        self.base = check_server_url(server_url)
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {api_key}"
        self.timeout_s = timeout_s

    def _check(self, response: requests.Response) -> Any:
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400:
            try:
                detail = body["error"]["message"]
            except (KeyError, TypeError):
                where = response.url.split("?", 1)[0]
                raise ApiFailure(
                    f"HTTP {response.status_code} from {where} that is not a morag-server "
                    f"answer ({' '.join(response.text.split())[:60]!r}); check --server-url"
                ) from None
            raise ApiFailure(f"HTTP {response.status_code}: {detail}", response.status_code)
        if body is None:
            raise ApiFailure(f"{response.url} did not answer JSON; check --server-url")
        return body

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.session.request(
                method, self.base + path, timeout=self.timeout_s, **kwargs
            )
        except requests.RequestException as exc:
            raise _unreachable(self.base, exc) from None
        return self._check(response)

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self._request("GET", path, params=params)

    def delete(self, path: str) -> Any:
        return self._request("DELETE", path)

    def post_json(self, path: str, body: dict[str, Any]) -> Any:
        return self._request("POST", path, json=body)

    def submit_file(
        self, path: Path, task_type: str, params: dict[str, Any], priority: int = 0
    ) -> str:
        boundary = "morag-" + secrets.token_hex(12)
        fields = {
            "task_type": task_type,
            "parameters": json.dumps(params),
            "priority": str(priority),
        }
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        reply = self._request(
            "POST", "/api/v1/tasks", data=_multipart(path, fields, boundary), headers=headers
        )
        return str(reply["task_id"])

    def wait(self, task_id: str, timeout_s: float, progress: TextIO | None = None) -> Any:
        """Poll a task until it ends; writes state changes to ``progress``."""
        deadline = time.monotonic() + timeout_s
        last = ""
        while True:
            info = self.get(f"/api/v1/tasks/{task_id}")
            line = (
                f"{info['state']}"
                + (f" {info['stage']}" if info.get("stage") else "")
                + (f" {info['progress'] * 100:.0f}%" if info.get("progress") is not None else "")
            )
            if progress is not None and line != last:
                print(f"{task_id}: {line}", file=progress)
                last = line
            if info["state"] in TERMINAL:
                if info["state"] != "completed" and info.get("last_error") and progress:
                    err = info["last_error"]
                    print(f"{task_id}: {err['type']}: {err['message']}", file=progress)
                return info
            if time.monotonic() > deadline:
                raise ApiFailure(f"task {task_id} still {info['state']} after {timeout_s:.0f} s")
            time.sleep(0.25)
