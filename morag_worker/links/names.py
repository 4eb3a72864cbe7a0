"""File names from servers: a safe local name, and the name a ``Content-Disposition``
header gives (``filename=`` or RFC 5987's ``filename*=UTF-8''…``)."""

from __future__ import annotations

import mimetypes
from email.message import Message

#: Longest input name kept; file systems allow 255 bytes per name.
MAX_NAME_CHARS = 200


def safe_name(name: str) -> str:
    """``name`` with only letters, digits and ``._-`` (others become ``_``), its
    extension kept; ``input`` when nothing is left."""
    keep = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
    keep = keep.lstrip(".")  # never a hidden file, never "." or ".."
    if len(keep) > 100:
        stem, dot, ext = keep.rpartition(".")
        keep = f"{stem[: 99 - len(ext)]}.{ext}" if dot and len(ext) <= 16 else keep[:100]
    return keep or "input"


def disposition_name(header: str | None) -> str:
    """The file name in a ``Content-Disposition`` header, without any directory part;
    empty when there is none."""
    if not header:
        return ""
    message = Message()
    message["content-disposition"] = header
    try:
        name = message.get_filename() or ""
    except (ValueError, LookupError):  # a malformed RFC 2231 value or an unknown charset
        return ""
    name = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if name in (".", ".."):
        return ""
    return "".join(c for c in name if c.isprintable())[:MAX_NAME_CHARS]


def fallback_name(stem: str, content_type: str | None) -> str:
    """A name for a download that came without one: the extension from its media type
    where that says more than "bytes"."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    ext = "" if media in ("", "application/octet-stream") else mimetypes.guess_extension(media)
    return f"{stem}{ext or ''}"
