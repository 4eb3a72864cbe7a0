"""Markdown results as HTML for the dashboard, safe to insert and cut into parts.

Results come from documents and web pages, so their Markdown is hostile input. It is
rendered by markdown-it (CommonMark with tables) with raw HTML turned off: every ``<`` in
the source comes out as ``&lt;``, so no tag, attribute or script of the input reaches the
page. Link targets pass markdown-it's check, which refuses ``javascript:``, ``vbscript:``,
``file:`` and ``data:`` (but images) URLs; links open in a new tab without a referrer.
Images are not loaded (a result must not make the dashboard fetch from a document's
hosts, and the dashboard works offline): each becomes a link saying ``image: <alt>``.
The dashboard's Content-Security-Policy (no inline script) is the second wall.
Headings move down two levels (``#`` becomes ``<h3>``), under the page's own headings.

A long result is cut into parts at blank lines outside fenced code, each about
:data:`PART_CHARS` of Markdown, so the page renders the first part at once and fetches
the others as the reader scrolls. A part is valid Markdown on its own; what crosses a
cut (a reference-style link defined in another part, a paragraph longer than a part)
renders as text or as two paragraphs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.token import Token

#: Markdown per part: renders in a few milliseconds in Python and in the browser, and
#: a typical document (tens of KB) is one part.
PART_CHARS = 64 * 1024
#: With no blank line for this long, a part is cut at a line break (or, in one endless
#: line, anywhere), so that no part grows without bound.
HARD_PART_CHARS = 4 * PART_CHARS

#: The page has its title (h1) and the result's section (h2) above the content.
HEADING_SHIFT = 2

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def _markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.add_render_rule("link_open", _link_open)
    md.add_render_rule("heading_open", _heading)
    md.add_render_rule("heading_close", _heading)
    md.add_render_rule("image", _image)
    return md


def _link_open(
    self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any
) -> str:  # markdown-it's render-rule signature
    tokens[idx].attrSet("rel", "noopener noreferrer nofollow")
    tokens[idx].attrSet("target", "_blank")
    return str(self.renderToken(tokens, idx, options, env))


def _heading(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    token.tag = f"h{min(6, int(token.tag[1:]) + HEADING_SHIFT)}"
    return str(self.renderToken(tokens, idx, options, env))


def _image(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    alt = escapeHtml(self.renderInlineAsText(token.children or [], options, env))
    src = escapeHtml(str(token.attrGet("src") or ""))
    label = f"image: {alt}" if alt else "image"
    return (
        f'<a class="md-image" href="{src}" rel="noopener noreferrer nofollow" '
        f'target="_blank">[{label}]</a>'
    )


_MD = _markdown()


def split_parts(text: str) -> list[tuple[int, int]]:
    """(start, end) offsets of the parts of ``text``; one part for a short text."""
    if len(text) <= PART_CHARS:
        return [(0, len(text))]
    parts: list[tuple[int, int]] = []
    start = pos = 0
    fence = ""
    last_blank = -1
    for line in text.splitlines(keepends=True):
        end = pos + len(line)
        if end - start > HARD_PART_CHARS and pos > start:
            parts.append((start, pos))  # no blank line for too long: cut at a line break
            start = pos
        while end - start > HARD_PART_CHARS:  # one line longer than a part: cut it
            parts.append((start, start + HARD_PART_CHARS))
            start += HARD_PART_CHARS
        match = _FENCE.match(line)
        if match and (not fence or match[1].startswith(fence)):
            fence = "" if fence else match[1]
        elif not fence and not line.strip():
            last_blank = end
        if end - start >= PART_CHARS and last_blank > start:
            parts.append((start, last_blank))
            start = last_blank
        pos = end
    if start < len(text):
        parts.append((start, len(text)))
    return parts


def render_part(text: str, part: int) -> tuple[str, int]:
    """The HTML of part ``part`` of ``text`` and how many parts there are (IndexError
    for a part past the end)."""
    parts = split_parts(text)
    start, end = parts[part]
    return _MD.render(text[start:end]), len(parts)
