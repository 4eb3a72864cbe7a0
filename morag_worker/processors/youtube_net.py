"""yt-dlp's HTTP traffic through the URL guard: every request, every redirect hop.

yt-dlp sends each request through a "request director" that picks one of its
registered handlers. The youtube processor gives its ``YoutubeDL`` a director holding
one handler only, :class:`GuardedRequestsRH`: yt-dlp's own ``requests`` handler (so
cookies, encodings, redirect methods and error types stay yt-dlp's) with two changes:

- its session checks every URL it sends with the :class:`~morag_worker.urlguard.
  UrlGuard` before the request, the first one and each redirect target alike
  (``requests`` calls ``Session.send`` once per hop), and pins the checked addresses;
- its connection pools connect only to pinned addresses (:mod:`morag_worker.pinning`),
  never to a second DNS answer, and never through a proxy.

A refusal leaves yt-dlp as :class:`GuardRefusal`, which carries the guard's
``BadInput``; the processor reports that, so the message says which address was
refused and nothing about what it would have answered (it is never contacted).
Transport errors (refused, reset, timed out, an answer that is not HTTP) reach the
task as one fixed message, :data:`NETWORK_ERROR`: their text would tell what a host and
port said (an SSH banner, "connection refused"), which is a port scanner's output even
for an allow-listed intranet host. The detail goes to the worker's log.

Other handlers (urllib, curl_cffi, websockets) are absent, so a request they alone
could serve fails instead of bypassing the guard.
"""

from __future__ import annotations

import re
from typing import Any

import urllib3
from loguru import logger
from yt_dlp.networking._requests import RequestsHTTPAdapter, RequestsRH, RequestsSession
from yt_dlp.networking.exceptions import RequestError, TransportError

from morag_worker.errors import BadInput, TaskFailure
from morag_worker.pinning import Pins, pin_pools
from morag_worker.urlguard import UrlGuard

#: What a task hears of any transport error; the same words whatever the host answered.
NETWORK_ERROR = (
    "the site could not be reached (connection failed, reset or timed out, or the answer "
    "was not HTTP); the task will be retried"
)
_BAD_INPUT = re.compile(r"Unsupported URL|HTTP Error 4\d\d|not available|Private video")


class GuardRefusal(RequestError):
    """The guard refused a URL yt-dlp was about to request; ``failure`` says why."""

    def __init__(self, failure: TaskFailure) -> None:
        super().__init__(failure.message)
        self.failure = failure


class _GuardedSession(RequestsSession):
    """yt-dlp's session, checking and pinning each hop before it is sent."""

    def __init__(self, guard: UrlGuard, pins: Pins) -> None:
        super().__init__()
        self._guard, self._pins = guard, pins

    def send(self, request: Any, **kwargs: Any) -> Any:
        try:
            checked = self._guard.check(str(request.url))
        except TaskFailure as exc:  # BadInput, or a retryable DNS failure
            raise GuardRefusal(exc) from None
        self._pins.hold(checked)
        return super().send(request, **kwargs)


class _PinnedAdapter(RequestsHTTPAdapter):
    def __init__(self, pins: Pins, **kwargs: Any) -> None:
        self._pins = pins  # before super().__init__, which builds the pool manager
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        pin_pools(self.poolmanager, self._pins)

    def proxy_manager_for(self, proxy: Any, **proxy_kwargs: Any) -> Any:
        raise GuardRefusal(TaskFailure("config", "proxies are not used", retryable=False))


class GuardedRequestsRH(RequestsRH):
    """yt-dlp's requests handler with the guard on every hop (see the module docstring).

    Built by ``YoutubeDL.build_request_director`` with yt-dlp's usual arguments plus
    ``guard``.
    """

    def __init__(self, *, guard: UrlGuard, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._guard = guard
        self._pins = Pins()

    def _get_proxies(self, request: Any) -> dict[str, str]:
        return {}  # a proxy would resolve and connect on our behalf, unchecked

    def _create_instance(self, cookiejar: Any, legacy_ssl_support: Any = None) -> Any:
        session = _GuardedSession(self._guard, self._pins)
        adapter = _PinnedAdapter(
            self._pins,
            ssl_context=self._make_sslcontext(legacy_ssl_support=legacy_ssl_support),
            source_address=self.source_address,
            max_retries=urllib3.util.retry.Retry(False),
        )
        session.adapters.clear()
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        session.headers.clear()
        session.cookies = cookiejar
        session.trust_env = False  # no proxies or .netrc from the environment
        return session


def ytdlp_failure(exc: Exception) -> TaskFailure:
    """The task failure for an error yt-dlp raised (guard refusals are reported apart)."""
    if _caused_by(exc, TransportError):
        logger.info("yt-dlp transport error: {}", exc)
        return TaskFailure("network", NETWORK_ERROR, retryable=True)
    message = str(exc).removeprefix("ERROR: ")
    if _BAD_INPUT.search(message):
        return BadInput(message)
    return TaskFailure("network", message, retryable=True)


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    """Whether ``kind`` is anywhere in the chain yt-dlp builds around an error
    (``exc_info`` of ``DownloadError``, ``cause`` of ``ExtractorError``, ``__cause__``)."""
    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo:
        item = todo.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        if isinstance(item, kind):
            return True
        seen.add(id(item))
        info = getattr(item, "exc_info", None)
        todo.extend([getattr(item, "cause", None), item.__cause__, item.__context__])
        if isinstance(info, tuple) and len(info) > 1:
            todo.append(info[1])
    return False
