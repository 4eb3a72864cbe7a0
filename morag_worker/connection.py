"""What to tell a person when the server cannot be reached, or its URL is wrong.

Shared by the ``morag`` CLI and the supervisor's client, so both say the same thing in
one line: the URL they tried, the innermost reason (``Connection refused``, not urllib3's
wrapping of it) and what to check.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import requests


def server_url_problem(url: str) -> str | None:
    """Why ``url`` is not a server base URL (None when it is)."""
    url = url.strip().rstrip("/")
    parsed = urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        return (
            f"--server-url {url!r}: expected http://HOST:PORT or https://HOST "
            "(the scheme is needed) [MORAG_SERVER_URL]"
        )
    if parsed.path.rstrip("/").endswith("/api/v1"):
        base = url[: url.rindex("/api/v1")]
        return f"--server-url {url!r}: give the server's base URL ({base}), without /api/v1"
    return None


def describe_unreachable(base: str, exc: requests.RequestException) -> str:
    """One line saying why a call to ``base`` got no answer, and what to check."""
    if isinstance(exc, requests.exceptions.SSLError):
        return (
            f"TLS error talking to {base}: {root_cause(exc)}; check the server's certificate "
            "(REQUESTS_CA_BUNDLE names a CA file) or the scheme of --server-url"
        )
    if isinstance(exc, requests.exceptions.Timeout):
        return (
            f"{base} did not answer in time; is the server overloaded or is "
            "a firewall dropping the connection?"
        )
    if isinstance(exc, requests.exceptions.ConnectionError):
        return (
            f"cannot reach morag-server at {base} ({root_cause(exc)}); is morag-server "
            "running there? (set --server-url or MORAG_SERVER_URL)"
        )
    return f"request to {base} failed: {root_cause(exc)}"


def root_cause(exc: BaseException) -> str:
    """The innermost reason (``Connection refused``) instead of urllib3's wrapping."""
    while exc.__context__ is not None or exc.__cause__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    text = str(exc)
    found = re.search(r"\[Errno -?\d+\] ([^')\]]+)", text)
    return found.group(1).strip() if found else text[:120]
