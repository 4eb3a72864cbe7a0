"""Plain text and Markdown inputs: decoding and light normalisation, no dependencies.

Markdown passes through unchanged apart from a YAML-style front matter block, which
becomes metadata (``title``, ``author``, ``date`` …) rather than chunk text. Plain text
keeps its paragraphs; a line that Markdown would read as a heading or a table row is
escaped so that the text means what it said.
"""

from __future__ import annotations

import re
from typing import Any

from morag_worker.processors.chunking import page_marker

_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?\n)(?:---|\.\.\.)[ \t]*\n", re.S)
_FRONT_KEY = re.compile(r"^([A-Za-z][\w-]*)[ \t]*:[ \t]*(.*?)[ \t]*$")
_FIRST_H1 = re.compile(r"^ {0,3}# +(.+?)[ \t#]*$", re.M)
_MARKDOWN_STARTS = re.compile(r"^(\s*)(#|\|)", re.M)


def decode_text(data: bytes) -> str:
    """Decode text bytes: BOM first, then strict UTF-8, then a detected charset.

    Never fails: undecodable bytes end up as U+FFFD rather than an error, because a
    few bad bytes in a long text should not lose the whole document.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        from charset_normalizer import from_bytes

        best = from_bytes(data).best()
        if best is not None:
            return str(best)
    except ImportError:  # charset_normalizer comes with requests; tolerate its absence
        pass
    return data.decode("cp1252", errors="replace")


def _normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")


def markdown_document(text: str) -> tuple[str, dict[str, Any]]:
    """Markdown as given, with front matter moved into metadata; title from it or the H1."""
    text = _normalise_newlines(text)
    meta: dict[str, Any] = {}
    match = _FRONT_MATTER.match(text)
    if match:
        for line in match.group(1).splitlines():
            if key_value := _FRONT_KEY.match(line):
                value = key_value.group(2).strip().strip("\"'")
                if value:
                    meta[key_value.group(1).lower()] = value
        text = text[match.end() :]
    if "title" not in meta and (heading := _FIRST_H1.search(text)):
        meta["title"] = heading.group(1).strip()
    return text.strip() + "\n", meta


def text_document(text: str) -> tuple[str, dict[str, Any]]:
    """Plain text as Markdown paragraphs; the title is a short first line, if any.

    Form feeds (``\\f``, the page separator of ``pdftotext`` and line printers) become
    page markers, so chunks of such text know their page.
    """
    text = _normalise_newlines(text).strip()
    meta: dict[str, Any] = {}
    first = text.split("\n", 1)[0].strip()
    if first and len(first) <= 120:
        meta["title"] = first
    pages = [
        _MARKDOWN_STARTS.sub(lambda m: m.group(1) + "\\" + m.group(2), page).strip()
        for page in text.split("\f")
    ]
    if len(pages) == 1:
        return pages[0] + "\n", meta
    meta["pages"] = len(pages)
    marked = [f"{page_marker(number)}\n\n{page}" for number, page in enumerate(pages, 1)]
    return "\n\n".join(marked) + "\n", meta
