"""The worker's HTTP client: one session, timeouts on every call, retries with backoff.

Retry policy: connection errors, timeouts, 5xx and 429 are retried with exponential
backoff and full jitter, honouring ``Retry-After``; everything else is final and raised
as :class:`ServerError` with the server's own error message. A 409 on a fenced call is
raised as :class:`LeaseLostError` so the caller can drop the task without retrying.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urljoin

import requests
from pydantic import BaseModel, ValidationError

from morag_worker.connection import describe_unreachable
from morag_worker.protocol import (
    API_PREFIX,
    BatchResultRequest,
    BatchResultResponse,
    HeartbeatRequest,
    HeartbeatResponse,
    InputFile,
    LeaseRequest,
    RegisterRequest,
    RegisterResponse,
    ReleaseRequest,
    ResultRequest,
    TaskSpec,
)
from morag_worker.streams import HashingWriter

M = TypeVar("M", bound=BaseModel)

#: Registration fields a server of release 0.1.0 does not know (and refuses).
REGISTER_FIELDS_SINCE_0_2 = ("protocol_version", "pid", "replaces_instance")
#: Header naming the supervisor instance on every call after registration.
INSTANCE_HEADER = "X-Morag-Worker-Instance"

#: Seconds to wait for a TCP connection: a healthy server on a LAN answers in milliseconds.
CONNECT_TIMEOUT_S = 5.0
#: Seconds to wait for a reply to an ordinary call (not a long-poll or a file transfer).
READ_TIMEOUT_S = 30.0
#: Backoff between retries: base * 2^n with full jitter, capped.
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
DOWNLOAD_CHUNK_BYTES = 1 << 20


class ServerError(Exception):
    """The server refused a call; ``message`` is its explanation, ``details`` the
    structured facts some errors carry."""

    def __init__(
        self, status: int, code: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}


class LeaseLostError(ServerError):
    """409: this worker no longer holds the lease; drop the task."""


class Unreachable(Exception):
    """The server could not be reached within the retry budget."""


def _error_of(response: requests.Response) -> ServerError:
    """The server's refusal: this protocol's ``{"error": {code, message}}``, FastAPI's
    ``{"detail": …}`` (MoRAG's API), or the start of whatever text came back."""
    details: dict[str, Any] = {}
    try:
        body = response.json()
        if isinstance(body, dict) and "error" not in body and "detail" in body:
            text = body["detail"]
            return ServerError(
                response.status_code,
                "error",
                (text if isinstance(text, str) else json.dumps(text))[:2000],
            )
        detail = body["error"]
        code, message = str(detail.get("code", "error")), str(detail.get("message", ""))
        if isinstance(detail.get("details"), dict):
            details = detail["details"]
    except (ValueError, KeyError, TypeError, AttributeError):
        code, message = "error", response.text[:500]
    cls = LeaseLostError if code == "lease_lost" else ServerError
    return cls(response.status_code, code, message[:2000], details)


def backoff_s(attempt: int, base_s: float = BACKOFF_BASE_S, cap_s: float = BACKOFF_CAP_S) -> float:
    """Full-jitter exponential backoff for retry number ``attempt`` (0-based)."""
    return random.uniform(0, min(cap_s, base_s * (2**attempt)))


class HttpClient:
    """One server's HTTP plumbing: a shared session, timeouts, retries with backoff, and
    a metric per call. Thread-safe: the session's pool is shared."""

    def __init__(
        self,
        server_url: str,
        api_key: str,
        on_request: Callable[[str, int | str], None] | None = None,
    ) -> None:
        self.base = server_url.rstrip("/") + "/"
        self.session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=16)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        if api_key:
            self.session.headers["Authorization"] = f"Bearer {api_key}"
        self.session.headers["User-Agent"] = "morag-worker"
        # Proxy settings and .netrc are read once here instead of on every call (requests
        # does that per request when trust_env is on, which costs more than the call).
        self.session.proxies = requests.utils.get_environ_proxies(self.base)
        self.session.trust_env = False
        self._on_request = on_request or (lambda _endpoint, _code: None)
        self._closed = threading.Event()

    def close(self) -> None:
        self._closed.set()
        self.session.close()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def wait_closed(self, timeout_s: float) -> bool:
        """Sleep up to ``timeout_s``; True at once when the client is closed."""
        return self._closed.wait(timeout_s)

    def _url(self, path: str) -> str:
        return urljoin(self.base, path.lstrip("/"))

    def call(
        self,
        method: str,
        path: str,
        endpoint: str,
        *,
        json: Any = None,
        body: BaseModel | bytes | None = None,
        read_timeout_s: float = READ_TIMEOUT_S,
        retry_for_s: float = 60.0,
        stream: bool = False,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        """One call with retries on transient failures, for at most ``retry_for_s`` seconds."""
        give_up = time.monotonic() + retry_for_s
        attempt = 0
        data = body.model_dump_json().encode() if isinstance(body, BaseModel) else body
        if data is not None:
            headers = {**(headers or {}), "Content-Type": "application/json"}
        while True:
            wait: float | None = None
            try:
                response = self.session.request(
                    method,
                    self._url(path),
                    json=json,
                    data=data,
                    stream=stream,
                    headers=headers,
                    timeout=(CONNECT_TIMEOUT_S, read_timeout_s),
                )
            except requests.RequestException as exc:
                self._on_request(endpoint, "error")
                failure: Exception = Unreachable(describe_unreachable(self.base.rstrip("/"), exc))
            else:
                self._on_request(endpoint, response.status_code)
                if response.status_code < 400:
                    return response
                failure = _error_of(response)
                if response.status_code not in RETRY_STATUSES:
                    raise failure
                wait = _retry_after(response)
            if wait is None:
                wait = backoff_s(attempt)
            attempt += 1
            if time.monotonic() + wait > give_up or self._closed.is_set():
                raise failure
            time.sleep(wait)

    def _model(self, cls: type[M], response: requests.Response) -> M:
        try:
            return cls.model_validate_json(response.content)
        except ValidationError as exc:
            raise ServerError(
                response.status_code,
                "bad_reply",
                f"the server's reply is not a valid {cls.__name__}: {exc}",
            ) from None


class WorkerClient(HttpClient):
    """Calls of the worker protocol."""

    def __init__(
        self,
        server_url: str,
        api_key: str,
        worker_id: str,
        on_request: Callable[[str, int | str], None] | None = None,
    ) -> None:
        super().__init__(server_url, api_key, on_request)
        self.worker_id = worker_id

    def set_instance(self, instance_id: str) -> None:
        """Send the instance id the server issued at registration on every later call."""
        if instance_id:
            self.session.headers[INSTANCE_HEADER] = instance_id

    # ---- protocol calls ----------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self.call("GET", "/health", "health", retry_for_s=0).json()
        return result

    def register(
        self, body: RegisterRequest, retry_for_s: float, legacy: bool = False
    ) -> RegisterResponse:
        """Register; ``legacy`` sends only the fields release 0.1.0's server knows (it
        refuses any other), for a worker upgraded before its server."""
        data = (
            body.model_dump_json(exclude=set(REGISTER_FIELDS_SINCE_0_2)).encode()
            if legacy
            else body
        )
        response = self.call(
            "POST",
            f"{API_PREFIX}/workers/register",
            "register",
            body=data,
            retry_for_s=retry_for_s,
        )
        return self._model(RegisterResponse, response)

    def lease(self, body: LeaseRequest, retry_for_s: float) -> LeaseReply:
        """Lease tasks. Each task is read on its own: one the worker cannot read (deeply
        nested or malformed parameters) is returned in ``unreadable`` instead of making
        the whole reply, and every other task in it, unreadable."""
        response = self.call(
            "POST",
            f"{API_PREFIX}/workers/{self.worker_id}/lease",
            "lease",
            body=body,
            read_timeout_s=body.wait_seconds + READ_TIMEOUT_S,
            retry_for_s=retry_for_s,
        )
        return read_lease_reply(response.status_code, response.content)

    def heartbeat(self, body: HeartbeatRequest, retry_for_s: float) -> HeartbeatResponse:
        response = self.call(
            "POST",
            f"{API_PREFIX}/workers/{self.worker_id}/heartbeat",
            "heartbeat",
            body=body,
            retry_for_s=retry_for_s,
        )
        return self._model(HeartbeatResponse, response)

    def result(self, task_id: str, body: ResultRequest, retry_for_s: float) -> str:
        response = self.call(
            "POST",
            f"{API_PREFIX}/workers/{self.worker_id}/tasks/{task_id}/result",
            "result",
            body=body,
            retry_for_s=retry_for_s,
        )
        return str(response.json().get("state", ""))

    def results(self, body: BatchResultRequest | bytes, retry_for_s: float) -> BatchResultResponse:
        """Upload several results in one call; each item has its own outcome. ``body``
        may be the request already serialised (see :func:`batch_body`)."""
        response = self.call(
            "POST",
            f"{API_PREFIX}/workers/{self.worker_id}/results",
            "results",
            body=body,
            retry_for_s=retry_for_s,
        )
        return self._model(BatchResultResponse, response)

    def release(self, task_id: str, lease_token: str, reason: str, retry_for_s: float) -> None:
        body = ReleaseRequest(lease_token=lease_token, reason=reason[:256])
        self.call(
            "POST",
            f"{API_PREFIX}/workers/{self.worker_id}/tasks/{task_id}/release",
            "release",
            body=body,
            retry_for_s=retry_for_s,
        )

    def unregister(self, retry_for_s: float) -> None:
        self.call(
            "DELETE",
            f"{API_PREFIX}/workers/{self.worker_id}",
            "unregister",
            retry_for_s=retry_for_s,
        )

    def download(self, file: InputFile, dest: Path, retry_for_s: float) -> None:
        """Stream an input file to ``dest`` and verify its sha256; resumes with ``Range``.

        Each byte is hashed as it is written, on a thread beside the socket reads (one
        pass; the file is never read back). A part of ``dest`` already there (a download
        cut off, in this call or before it) is hashed once and the rest asked for with
        ``Range``; a server that answers the whole file instead starts it again.
        """
        dest.parent.mkdir(parents=True, exist_ok=True)
        give_up = time.monotonic() + retry_for_s
        attempt = 0
        digest, hashed = hashlib.sha256(), 0
        while True:
            have = dest.stat().st_size if dest.exists() else 0
            if have >= file.size:
                dest.unlink(missing_ok=True)
                have = 0
            if hashed != have:  # a part left by an earlier call: hash what is there
                digest, hashed = _hash_prefix(dest, have), have
            headers = {"Range": f"bytes={have}-"} if have else None
            try:
                response = self.call(
                    "GET",
                    file.url,
                    "file",
                    stream=True,
                    headers=headers,
                    retry_for_s=max(0.0, give_up - time.monotonic()),
                )
                with response:
                    if response.status_code != 206:
                        digest, hashed = hashlib.sha256(), 0
                    with dest.open("ab" if response.status_code == 206 else "wb") as out:
                        writer = HashingWriter(out, digest)
                        try:
                            for chunk in response.iter_content(DOWNLOAD_CHUNK_BYTES):
                                writer.write(chunk)
                        finally:
                            writer.close()
                            hashed += writer.written
                break
            except requests.RequestException as exc:  # the stream broke mid-way: resume
                if time.monotonic() > give_up:
                    raise Unreachable(f"download of {file.name} failed: {exc}") from exc
                time.sleep(backoff_s(attempt))
                attempt += 1
        _check_digest(dest, file, digest.hexdigest())


@dataclass(frozen=True)
class LeaseReply:
    tasks: list[TaskSpec]
    #: (task_id, lease_token, why) of tasks that could not be read.
    unreadable: list[tuple[str, str, str]]
    #: Seconds to wait before asking again: 0 for a server that long-polls (it already
    #: waited); a back-off from a server that answers "nothing" at once.
    wait_s: float = 0.0


def read_lease_reply(status: int, content: bytes) -> LeaseReply:
    try:
        raw = json.loads(content)
        items = raw["tasks"]
        if not isinstance(items, list):
            raise TypeError("tasks is not a list")
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise ServerError(status, "bad_reply", f"the lease reply is not readable: {exc}") from None
    tasks, unreadable = [], []
    for item in items:
        try:
            tasks.append(TaskSpec.model_validate(item))
        except (ValidationError, RecursionError, ValueError) as exc:
            ident = item if isinstance(item, dict) else {}
            task_id, token = str(ident.get("task_id", ""))[:64], str(ident.get("lease_token", ""))
            unreadable.append((task_id, token[:128], _first_error(exc)))
    return LeaseReply(tasks, unreadable)


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError) and exc.errors():
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))[:200]
        return f"{where}: {first.get('msg', 'invalid')}"[:500]
    return f"{type(exc).__name__}: {exc}"[:500]


def batch_body(items: list[tuple[str, ResultRequest]]) -> bytes:
    """A :class:`BatchResultRequest` as JSON, built from results serialised one by one:
    each result is dumped once and never validated again on its way out."""
    parts = [
        f'{{"task_id":{json.dumps(task_id)},'.encode() + req.model_dump_json().encode()[1:]
        for task_id, req in items
    ]
    return b'{"results":[' + b",".join(parts) + b"]}"


def _hash_prefix(path: Path, size: int) -> Any:
    """A sha256 fed with the first ``size`` bytes of ``path``."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        left = size
        while left > 0 and (chunk := handle.read(min(DOWNLOAD_CHUNK_BYTES, left))):
            digest.update(chunk)
            left -= len(chunk)
    return digest


def _check_digest(path: Path, file: InputFile, found: str) -> None:
    if found != file.sha256:
        path.unlink(missing_ok=True)
        raise ServerError(
            200, "checksum_mismatch", f"{file.name}: sha256 {found} does not match {file.sha256}"
        )


def _retry_after(response: requests.Response) -> float | None:
    raw = response.headers.get("Retry-After")
    if raw is None:
        return None
    try:
        return max(0.0, min(float(raw), BACKOFF_CAP_S * 4))
    except ValueError:
        return None
