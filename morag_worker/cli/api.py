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
UPLOAD_CHUNK_BYTES = 4 << 20
#: Files from this size on go as resumable uploads: a broken connection costs only the
#: piece in flight. Smaller ones take one request (one round trip fewer).
RESUMABLE_FROM_BYTES = 64 << 20


class ApiFailure(Exception):
    """A call failed; the message says why (the server's own words when it gave some).

    ``status`` is the HTTP status of a morag-server's error answer; None when there was
    no answer, or an answer that was not a morag-server's."""

    def __init__(self, message: str, status: int | None = None, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        #: The server's error code (``not_found``, ``upload_busy`` …); empty without one.
        self.code = code


class UploadsUnsupported(ApiFailure):
    """The server has no ``/api/v1/uploads`` (a release before resumable uploads)."""


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


class _MultipartBody:
    """A multipart body streamed from disk, so a 2 GB upload never sits in memory.

    It has a length, so the request carries ``Content-Length`` and the file's pieces go
    out as they are read (a generator would be sent chunked: every piece copied once
    more to frame it, and a server that cannot tell the size up front).
    """

    def __init__(self, path: Path, fields: dict[str, str], boundary: str) -> None:
        self.path = path
        self.size = path.stat().st_size
        head = b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
            f"{value}\r\n".encode()
            for name, value in fields.items()
        )
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        safe_name = path.name.replace('"', "_")
        self.head = (
            head
            + (
                f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
                f'filename="{safe_name}"\r\nContent-Type: {ctype}\r\n\r\n'
            ).encode()
        )
        self.tail = f"\r\n--{boundary}--\r\n".encode()

    def __len__(self) -> int:
        return len(self.head) + self.size + len(self.tail)

    def __iter__(self) -> Iterator[bytes]:
        yield self.head
        yield from read_pieces(self.path, 0, self.size)
        yield self.tail


class _Pieces:
    """Bytes ``offset`` to ``size`` of a file as a request body with a length."""

    def __init__(self, path: Path, offset: int, size: int) -> None:
        self.path, self.offset, self.size = path, offset, size

    def __len__(self) -> int:
        return self.size - self.offset

    def __iter__(self) -> Iterator[bytes]:
        return read_pieces(self.path, self.offset, self.size)


def read_pieces(path: Path, offset: int, size: int) -> Iterator[bytes]:
    """Bytes ``offset`` to ``size`` of ``path`` in ``UPLOAD_CHUNK_BYTES`` pieces; ApiFailure
    when the file ends sooner (it changed while it was being sent)."""
    with path.open("rb") as handle:
        handle.seek(offset)
        left = size - offset
        while left > 0:
            chunk = handle.read(min(UPLOAD_CHUNK_BYTES, left))
            if not chunk:
                raise ApiFailure(
                    f"{path} shrank while it was being uploaded (now {size - left} bytes, "
                    f"{size} when the upload began); upload it again once it is complete"
                )
            left -= len(chunk)
            yield chunk


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
            raise ApiFailure(
                f"HTTP {response.status_code}: {detail}",
                response.status_code,
                str(body["error"].get("code", "")),
            )
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

    def submit_file_resumable(
        self,
        path: Path,
        task_type: str,
        params: dict[str, Any],
        priority: int = 0,
        retry_for_s: float = 300.0,
    ) -> str:
        """Submit a task with ``path`` sent as a resumable upload (``/api/v1/uploads``):
        a connection that breaks mid-file costs only the piece in flight, and the rest is
        sent from the offset the server holds. Gives up after ``retry_for_s`` seconds
        without progress."""
        size = path.stat().st_size
        try:
            upload = self.post_json("/api/v1/uploads", {"name": path.name, "size": size})
        except ApiFailure as exc:
            if exc.status is None and "HTTP 404" in str(exc):
                raise UploadsUnsupported(str(exc)) from None
            raise
        self.send_upload(path, upload, retry_for_s)
        body = {
            "task_type": task_type,
            "parameters": params,
            "priority": priority,
            "uploads": [upload["upload_id"]],
        }
        return str(self.post_json("/api/v1/tasks", body)["task_id"])

    def send_upload(self, path: Path, upload: dict[str, Any], retry_for_s: float) -> None:
        """Send ``path`` into an upload from the offset the server holds, until complete."""
        where = f"/api/v1/uploads/{upload['upload_id']}"
        offset, size = int(upload["offset"]), int(upload["size"])
        give_up = time.monotonic() + retry_for_s
        attempt = 0
        while offset < size:
            try:
                reply = self._request(
                    "PATCH",
                    where,
                    data=_Pieces(path, offset, size),
                    headers={
                        "Upload-Offset": str(offset),
                        "Content-Type": "application/offset+octet-stream",
                    },
                )
                offset = int(reply["offset"])
                attempt = 0
                continue
            except ApiFailure as exc:
                # No answer (the connection broke), the server busy or failing, or
                # another request still writing the upload: ask where it stands.
                again = exc.code in ("upload_busy", "offset_mismatch")
                if exc.status is not None and exc.status < 500 and not again:
                    raise
                if time.monotonic() > give_up:
                    raise ApiFailure(
                        f"upload of {path} stopped at byte {offset} of {size}: {exc}"
                    ) from None
            time.sleep(min(5.0, 0.2 * 2**attempt))
            attempt += 1
            try:
                before, offset = offset, int(self.get(where)["offset"])
            except ApiFailure as exc:
                if exc.status is not None or time.monotonic() > give_up:
                    raise
                continue
            if offset > before:
                give_up = time.monotonic() + retry_for_s  # progress: a fresh budget

    def submit_file(
        self,
        path: Path,
        task_type: str,
        params: dict[str, Any],
        priority: int = 0,
        resumable: bool | None = None,
    ) -> str:
        """Submit a task with ``path`` as its input: as a resumable upload when
        ``resumable`` (None: for files of ``RESUMABLE_FROM_BYTES`` and more, falling back
        to one multipart request on a server without resumable uploads), else in one
        multipart request."""
        if resumable or (resumable is None and path.stat().st_size >= RESUMABLE_FROM_BYTES):
            try:
                return self.submit_file_resumable(path, task_type, params, priority)
            except UploadsUnsupported:
                if resumable:
                    raise ApiFailure(
                        f"{self.base} has no resumable uploads (an older release); "
                        "upgrade it, or send the file in one request"
                    ) from None
        boundary = "morag-" + secrets.token_hex(12)
        fields = {
            "task_type": task_type,
            "parameters": json.dumps(params),
            "priority": str(priority),
        }
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        reply = self._request(
            "POST", "/api/v1/tasks", data=_MultipartBody(path, fields, boundary), headers=headers
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
