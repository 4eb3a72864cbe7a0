"""From positioned PDF lines and tables to Markdown blocks.

PDFs carry no structure, only text placed on pages, so structure is inferred:

- The body size is the font size that sets the most characters in the document.
  Short lines (≤ 16 words) set at least 10 % and 1 pt larger are headings; their
  distinct sizes, largest first, become levels 1-4.
- Lines whose vertical gap is under 0.6 of a line height join into one paragraph
  (a hyphen at a line end before a lowercase letter is removed); a bullet or a
  number starts a list item.
- A page number alone on the first or last line of a page is dropped: it would
  otherwise interrupt the paragraph that runs across the page break.
- Tables (already cut out of the line flow) become pipe tables at their position.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

_BULLET = re.compile(r"^[•●▪◦‣∙·\-*–]\s+")
_NUMBERED = re.compile(r"^\(?\d{1,3}[.)]\s+")
_PAGE_NUMBER = re.compile(r"^(page\s+)?\d{1,5}(\s*(/|of)\s*\d{1,5})?$", re.I)
_MARKDOWN_START = re.compile(r"^(\s*)(#|\||>|```)")
MAX_HEADING_WORDS = 16
MAX_LEVELS = 4


@dataclass(frozen=True)
class Line:
    top: float
    bottom: float
    size: float  # median character height in points; 0 when unknown
    text: str
    x0: float = 0.0
    x1: float = float("inf")


@dataclass(frozen=True)
class Table:
    top: float
    bbox: tuple[float, float, float, float]
    rows: list[list[str | None]]


@dataclass
class PageItems:
    number: int
    lines: list[Line]
    tables: list[Table]
    #: Set for a page read by OCR: its paragraphs in reading order.
    ocr_paragraphs: list[str] | None = field(default=None)
    #: The OCR engine's confidence (0..1) for such a page.
    ocr_confidence: float | None = None
    #: Set for a page converted by docling's PDF pipeline: its Markdown as is.
    markdown: str | None = None


def _escape(text: str) -> str:
    """Keep text that merely starts with ``#``, ``|``, ``>`` from turning into syntax."""
    return _MARKDOWN_START.sub(lambda m: m.group(1) + "\\" + m.group(2), text)


def heading_levels(pages: list[PageItems]) -> dict[float, int]:
    """Font size → heading level, from the whole document's size statistics."""
    weights: Counter[float] = Counter()
    for page in pages:
        for line in page.lines:
            if line.size > 0:
                weights[line.size] += len(line.text)
    if not weights:
        return {}
    body = weights.most_common(1)[0][0]
    sizes = {
        line.size
        for page in pages
        for line in page.lines
        if line.size >= max(body * 1.1, body + 1.0) and len(line.text.split()) <= MAX_HEADING_WORDS
    }
    ordered = sorted(sizes, reverse=True)
    return {size: min(i + 1, MAX_LEVELS) for i, size in enumerate(ordered)}


def table_markdown(rows: list[list[str | None]]) -> str:
    """A pipe table; the first row is the header, ragged rows are padded."""
    cleaned = [[" ".join((cell or "").split()).replace("|", "\\|") for cell in row] for row in rows]
    cleaned = [row for row in cleaned if any(row)]
    if not cleaned:
        return ""
    width = max(len(row) for row in cleaned)
    cleaned = [row + [""] * (width - len(row)) for row in cleaned]
    lines = ["| " + " | ".join(cleaned[0]) + " |", "|" + " --- |" * width]
    lines += ["| " + " | ".join(row) + " |" for row in cleaned[1:]]
    return "\n".join(lines)


def _drop_page_numbers(lines: list[Line]) -> list[Line]:
    ordered = sorted(lines, key=lambda line: line.top)
    while ordered and _PAGE_NUMBER.match(ordered[-1].text.strip()):
        ordered.pop()
    if ordered and _PAGE_NUMBER.match(ordered[0].text.strip()):
        ordered.pop(0)
    return ordered


def _join(paragraph: str, text: str) -> str:
    if paragraph.endswith("-") and paragraph[-2:-1].isalpha() and text[:1].islower():
        return paragraph[:-1] + text
    return f"{paragraph} {text}"


def _page_blocks(page: PageItems, levels: dict[float, int]) -> list[str]:
    """Markdown blocks of one text page, in top-to-bottom order."""
    items: list[Line | Table] = [*_drop_page_numbers(page.lines), *page.tables]
    items.sort(key=lambda item: item.top)
    blocks: list[str] = []
    previous: Line | None = None  # the last body line, while its paragraph is open
    for item in items:
        if isinstance(item, Table):
            blocks.append(table_markdown(item.rows))
            previous = None
            continue
        text = item.text.strip()
        level = levels.get(item.size, 0) if len(text.split()) <= MAX_HEADING_WORDS else 0
        if level:
            blocks.append("#" * level + " " + text)
            previous = None
        elif item_text := _list_item(text):
            # items of one list stay on adjacent lines so they read (and chunk) as a list
            in_list = previous is not None and _is_list(blocks[-1])
            blocks[-1:] = [blocks[-1] + "\n" + item_text] if in_list else [*blocks[-1:], item_text]
            previous = item
        elif previous is not None and _continues(previous, item):
            blocks[-1] = _join(blocks[-1], text)
            previous = item
        else:
            blocks.append(_escape(text))
            previous = item
    return [block for block in blocks if block]


def _list_item(text: str) -> str:
    """``- item`` for a bulleted line, the line itself when numbered, else empty."""
    if bullet := _BULLET.match(text):
        return "- " + text[bullet.end() :]
    return text if _NUMBERED.match(text) else ""


def _is_list(block: str) -> bool:
    last = block.rsplit("\n", 1)[-1]
    return last.startswith("- ") or bool(_NUMBERED.match(last))


def _continues(previous: Line, line: Line) -> bool:
    height = max(previous.bottom - previous.top, 1.0)
    return line.top - previous.bottom < 0.6 * height and abs(line.size - previous.size) < 0.6


def render_pages(pages: list[PageItems]) -> list[tuple[PageItems, str]]:
    """Each page with its Markdown body (blocks separated by blank lines)."""
    levels = heading_levels(pages)
    rendered = []
    for page in pages:
        if page.markdown is not None:
            blocks = [page.markdown] if page.markdown else []
        elif page.ocr_paragraphs is not None:
            blocks = [_escape(p) for p in page.ocr_paragraphs if p.strip()]
        else:
            blocks = _page_blocks(page, levels)
        rendered.append((page, "\n\n".join(blocks)))
    return rendered
