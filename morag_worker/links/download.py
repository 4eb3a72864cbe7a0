"""A download that survives a broken connection: ``Range`` resume, size checked.

For servers that publish no checksum (MoRAG's remote-jobs API): the file is complete
when it has the size the server announced (``Content-Length`` of the full answer, the
total in ``Content-Range`` of a partial one). A resume names the ``ETag`` it continues
(``If-Range``), so a file replaced on the server meanwhile is fetched whole again.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from morag_worker.client import HttpClient, ServerError, Unreachable, backoff_s
from morag_worker.links.names import disposition_name

#: Bytes per read. A connection that breaks loses the read in progress (requests drops
#: a short last read), so a resume starts at most this far behind what had arrived.
READ_BYTES = 64 * 1024
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


@dataclass(frozen=True)
class Download:
    #: The file name the server gave (``Content-Disposition``); empty when none.
    name: str
    size_bytes: int
    content_type: str


@dataclass
class _Progress:
    total: int | None = None
    etag: str = ""
    name: str = ""
    content_type: str = ""


def fetch_resumable(http: HttpClient, url: str, part: Path, retry_for_s: float) -> Download:
    """Stream ``url`` into ``part``, resuming after broken connections for up to
    ``retry_for_s`` seconds. Raises :class:`ServerError` for a refusal (403, 404 …) or a
    file of the wrong size, :class:`Unreachable` when the time runs out."""
    part.parent.mkdir(parents=True, exist_ok=True)
    part.unlink(missing_ok=True)
    give_up = time.monotonic() + retry_for_s
    seen = _Progress()
    attempt = 0
    while True:
        try:
            if _attempt(http, url, part, seen, give_up):
                return Download(seen.name, part.stat().st_size, seen.content_type)
            failure = "the file did not arrive whole"
        except (requests.RequestException, Unreachable) as exc:  # broken mid-way: resume
            failure = str(exc)
        if time.monotonic() > give_up:
            raise Unreachable(f"download failed within {retry_for_s:.0f} s: {failure}")
        time.sleep(backoff_s(attempt, cap_s=5.0))
        attempt += 1


def _attempt(http: HttpClient, url: str, part: Path, seen: _Progress, give_up: float) -> bool:
    """One request; True once the file is complete."""
    have = part.stat().st_size if part.exists() else 0
    headers = {}
    if have and seen.total is not None and have < seen.total:
        headers["Range"] = f"bytes={have}-"
        if seen.etag:
            headers["If-Range"] = seen.etag
    elif have:
        part.unlink()  # nothing known to resume against: start again
        have = 0
    try:
        response = http.call(
            "GET",
            url,
            "download",
            stream=True,
            headers=headers or None,
            retry_for_s=max(0.0, give_up - time.monotonic()),
        )
    except ServerError as exc:
        if exc.status != 416:
            raise
        part.unlink(missing_ok=True)  # the range no longer fits the file: start again
        seen.total = None
        return False
    with response:
        mode = _take_headers(response, seen, have)
        if mode is None:  # a range that does not continue the file: start again
            part.unlink(missing_ok=True)
            seen.total = None
            return False
        with part.open(mode) as out:
            for chunk in response.iter_content(READ_BYTES):
                out.write(chunk)
    size = part.stat().st_size
    if seen.total is None or size == seen.total:
        return True
    if size < seen.total and time.monotonic() < give_up:
        return False  # the stream ended early: ask for the rest
    raise ServerError(
        200,
        "size_mismatch",
        f"the download has {size} bytes, the server announced {seen.total}",
    )


def _take_headers(response: requests.Response, seen: _Progress, have: int) -> str | None:
    """Read size, name and validator from the answer; the file mode to write with, or
    None when a partial answer does not continue the bytes already here."""
    seen.name = disposition_name(response.headers.get("content-disposition")) or seen.name
    seen.content_type = response.headers.get("content-type", "") or seen.content_type
    seen.etag = response.headers.get("etag", "") or seen.etag
    if response.status_code == 206:
        match = _CONTENT_RANGE.match(response.headers.get("content-range", "").strip())
        if match is not None and int(match.group(1)) == have:
            if match.group(3) != "*":
                seen.total = int(match.group(3))
            return "ab"
        return None
    length = response.headers.get("content-length")
    seen.total = int(length) if length and length.isdigit() else None
    return "wb"
