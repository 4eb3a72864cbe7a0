"""Fetch a URL through the :class:`~morag_worker.urlguard.UrlGuard`, within limits.

Contract of :func:`fetch`:

- Every hop is checked by the guard, the first URL and each redirect target alike;
  redirects are followed here (never by ``requests``), at most ``max_redirects``.
- DNS rebinding: the connection goes to an address the guard just checked. The URL
  is rewritten to that address and the original host travels in the ``Host`` header
  and, for https, in SNI and certificate verification (``server_hostname`` and
  ``assert_hostname``). Re-resolving and comparing would leave a window between the
  comparison and the connection; pinning leaves none.
- The body is streamed and the fetch is aborted as soon as it passes ``max_bytes``
  (counted after content decoding, so a gzip bomb is stopped too); a declared
  ``Content-Length`` over the limit is refused before reading.
- Timeouts: ``connect_timeout_s`` per connection attempt, ``read_timeout_s`` per read,
  and ``total_timeout_s`` for the whole fetch, checked between reads (a read waits at
  most the smaller of the read timeout and the time left). The supervisor's task
  deadline remains the hard bound.
- ``content_types`` (media types such as ``text/html``) refuses any other type.
- Outcome mapping: policy violations, 4xx (but 408/429), oversize bodies, wrong
  content types and certificate errors are ``BadInput``; network errors, timeouts,
  408/429 and 5xx are retryable ``TaskFailure``.

Proxies from the environment are ignored (``trust_env = False``): a proxy would
connect on our behalf to whatever it resolves, defeating the address check.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from urllib.parse import urljoin

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import HTTPError as Urllib3Error

from morag_worker import __version__
from morag_worker.errors import BadInput, TaskFailure
from morag_worker.urlguard import CheckedUrl, UrlGuard

_REDIRECTS = {301, 302, 303, 307, 308}
_RETRYABLE_4XX = {408, 425, 429}
_READ_SIZE = 64 * 1024
USER_AGENT = f"morag-worker/{__version__}"


@dataclass(frozen=True)
class FetchLimits:
    """Limits for one fetch. Callers build them from ``ProcessorSettings``."""

    max_bytes: int = 10 * 1024 * 1024
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 20.0
    total_timeout_s: float = 60.0
    max_redirects: int = 5
    #: Allowed media types (lower case, no parameters); empty allows any.
    content_types: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Fetched:
    """A fetched body. ``url`` is the final URL after redirects; ``redirects`` the hops."""

    url: str
    status: int
    content_type: str
    charset: str | None
    body: bytes
    headers: dict[str, str]
    redirects: list[str] = field(default_factory=list)


class _PinnedTLSAdapter(HTTPAdapter):
    """Verifies the certificate and sends SNI for ``hostname`` while the URL holds an IP."""

    def __init__(self, hostname: str) -> None:
        self._hostname = hostname
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: object, **kwargs: object) -> None:
        kwargs["server_hostname"] = self._hostname
        kwargs["assert_hostname"] = self._hostname
        super().init_poolmanager(*args, **kwargs)  # type: ignore[arg-type]


def fetch(url: str, guard: UrlGuard, limits: FetchLimits) -> Fetched:
    """GET ``url`` through ``guard`` within ``limits``; see the module docstring."""
    deadline = time.monotonic() + limits.total_timeout_s
    redirects: list[str] = []
    current = url
    while True:
        checked = guard.check(current)
        with _session(checked.host) as session, _request(session, checked, limits, deadline) as r:
            if r.status_code not in _REDIRECTS:
                return _read(checked, r, limits, deadline, redirects)
            location, status = r.headers.get("Location"), r.status_code
        if not location:
            raise BadInput(f"{current!r} answered {status} without a Location")
        if len(redirects) >= limits.max_redirects:
            raise BadInput(f"{url!r} redirected more than {limits.max_redirects} times")
        current = urljoin(current, location)
        redirects.append(current)


def _pinned_url(checked: CheckedUrl, address: object) -> tuple[str, str]:
    """The URL with ``address`` in place of the host, and the ``Host`` header to send."""
    ip = f"[{address}]" if ":" in str(address) else str(address)
    default_port = 443 if checked.scheme == "https" else 80
    suffix = "" if checked.port == default_port else f":{checked.port}"
    path = checked.parts.path or "/"
    query = f"?{checked.parts.query}" if checked.parts.query else ""
    host = f"[{checked.host}]" if ":" in checked.host else checked.host
    return f"{checked.scheme}://{ip}:{checked.port}{path}{query}", f"{host}{suffix}"


def _session(hostname: str) -> requests.Session:
    """A session for one hop: no proxies or netrc from the environment, TLS for ``hostname``."""
    session = requests.Session()
    session.trust_env = False
    session.mount("https://", _PinnedTLSAdapter(hostname))
    return session


def _request(
    session: requests.Session, checked: CheckedUrl, limits: FetchLimits, deadline: float
) -> requests.Response:
    """Open a streaming GET to the first checked address that accepts a connection."""
    last_error: Exception | None = None
    for address in checked.addresses:
        remaining = _remaining(checked.url, deadline)
        pinned, host_header = _pinned_url(checked, address)
        headers = {"Host": host_header, "User-Agent": USER_AGENT, "Accept": "*/*"}
        timeout = (min(limits.connect_timeout_s, remaining), min(limits.read_timeout_s, remaining))
        try:
            return session.get(
                pinned, headers=headers, stream=True, allow_redirects=False, timeout=timeout
            )
        except requests.exceptions.SSLError as exc:
            raise BadInput(f"{checked.url!r}: TLS certificate check failed ({exc})") from None
        except requests.exceptions.ConnectionError as exc:
            last_error = exc  # includes connect timeouts: try the next address
        except requests.exceptions.Timeout as exc:
            raise TaskFailure(
                "timeout", f"{checked.url!r} timed out: {exc}", retryable=True
            ) from None
    raise TaskFailure(
        "network", f"cannot connect to {checked.url!r}: {last_error}", retryable=True
    ) from None


def _remaining(url: str, deadline: float) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TaskFailure("timeout", f"fetching {url!r} ran out of time", retryable=True)
    return remaining


def _check_status(url: str, status: int) -> None:
    if 200 <= status < 300:
        return
    message = f"{url!r} answered HTTP {status}"
    if status >= 500 or status in _RETRYABLE_4XX:
        raise TaskFailure("fetch_failed", message, retryable=True)
    raise BadInput(f"{message}; check the URL")


def _media_type(response: requests.Response) -> tuple[str, str | None]:
    raw = response.headers.get("Content-Type", "")
    media, _, params = raw.partition(";")
    charset = None
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.lower() == "charset" and value:
            charset = value.strip("\"' ")
    return media.strip().lower(), charset


def _read(
    checked: CheckedUrl,
    response: requests.Response,
    limits: FetchLimits,
    deadline: float,
    redirects: list[str],
) -> Fetched:
    url = checked.url
    _check_status(url, response.status_code)
    media, charset = _media_type(response)
    if limits.content_types and media not in limits.content_types:
        allowed = ", ".join(sorted(limits.content_types))
        raise BadInput(f"{url!r} has content type {media or 'none'!r}; expected {allowed}")
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limits.max_bytes:
        raise BadInput(f"{url!r} declares {declared} bytes; the limit is {limits.max_bytes}")
    body = _read_body(url, response, limits, deadline)
    headers = {k.lower(): v for k, v in response.headers.items()}
    return Fetched(url, response.status_code, media, charset, body, headers, redirects)


def _read_body(
    url: str, response: requests.Response, limits: FetchLimits, deadline: float
) -> bytes:
    """Read the decoded body, aborting past ``max_bytes`` or the deadline."""
    raw = response.raw
    # read1 returns what has arrived instead of waiting for a full buffer, so the
    # deadline is checked at least once per read timeout even against a slow drip.
    read = getattr(raw, "read1", None) or raw.read
    parts: list[bytes] = []
    total = 0
    try:
        while True:
            _remaining(url, deadline)
            chunk = read(_READ_SIZE, decode_content=True)
            if not chunk:
                break
            total += len(chunk)
            if total > limits.max_bytes:
                raise BadInput(
                    f"{url!r} is larger than the limit of {limits.max_bytes} bytes; refused"
                )
            parts.append(chunk)
    except (requests.exceptions.RequestException, Urllib3Error, OSError) as exc:
        # Raw reads raise urllib3's own errors (ReadTimeoutError, ProtocolError).
        raise TaskFailure("network", f"reading {url!r} failed: {exc}", retryable=True) from None
    return b"".join(parts)
