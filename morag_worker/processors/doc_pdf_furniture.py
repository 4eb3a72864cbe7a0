"""Page furniture: running headers and footers, and page numbers, out of the body.

A running header or footer is a line in the top or bottom rows of a page that comes
back, in the same size and at the same height, on other pages. Its text is compared
with every run of digits (and a lone roman numeral) made one, so ``Report 2024 — page 3``
on page 3 matches ``Report 2024 — page 4`` on page 4. A line there that is only a page
number (``7``, ``- 7 -``, ``Page 7 of 12``, ``vii``) goes too, even on a page of its own.

Up to :data:`EDGE_ROWS` rows are looked at from the top and from the bottom; the
look stops at the first row that keeps a line, so the body's first and last lines
are furniture only when the rows outside them were.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

from morag_worker.processors.doc_pdf_items import Line, PageItems

_ROMAN_NUMERAL = r"(?=[ivxlcdm])m{0,3}(cm|cd|d?c{0,3})(xc|xl|l?x{0,3})(ix|iv|v?i{0,3})"
PAGE_NUMBER = re.compile(
    rf"^(page\s+|p\.\s*)?[-–—(\[]?\s*(\d{{1,5}}|{_ROMAN_NUMERAL})\s*[-–—)\]]?"
    r"(\s*(/|of)\s*\d{1,5})?$",
    re.I,
)
_DIGITS = re.compile(r"\d+")
_ROMAN = re.compile(rf"\b(?=[ivxlcdm]+\b){_ROMAN_NUMERAL}(?<=[ivxlcdm])\b", re.I)  # whole words
#: Rows looked at from each edge of a page: a header may sit above a second line (an
#: author line under a journal name); more than two rows of furniture are rare.
EDGE_ROWS = 2
#: A line with a number in the same place on this many pages is a running header or
#: footer: a book's running head ("Chapter 3: Utilities 6") may serve two pages only…
MIN_PAGES = 2
#: …a line without a number needs this many: a reference manual's pages may end with
#: the same sentence twice.
MIN_PAGES_PLAIN = 3
#: A repeat within this many line heights counts as the same place on the page.
SAME_PLACE_HEIGHTS = 0.5

_Key = tuple[str, float, str]  # edge, size, text with numbers made one


def _key(edge: str, line: Line) -> _Key:
    text = _ROMAN.sub("#", _DIGITS.sub("#", line.text.lower()))
    return edge, round(line.size * 2) / 2, " ".join(text.split())


def _edge_rows(lines: list[Line]) -> dict[str, list[list[int]]]:
    """Indexes of the lines in the first and the last :data:`EDGE_ROWS` rows of a page."""
    order = sorted(range(len(lines)), key=lambda i: lines[i].top)
    rows: list[list[int]] = []
    for i in order:
        line = lines[i]
        if (
            rows
            and lines[rows[-1][0]].top <= (line.top + line.bottom) / 2 <= lines[rows[-1][0]].bottom
        ):
            rows[-1].append(i)
        else:
            rows.append([i])
    return {"top": rows[:EDGE_ROWS], "bottom": rows[::-1][:EDGE_ROWS]}


def _place(edge: str, line: Line) -> float:
    return line.top if edge == "top" else line.bottom


@dataclass(frozen=True)
class _Seen:
    page: int
    place: float  # top of a header line, bottom of a footer line
    text: str
    row: tuple[int, str, int]  # page, edge, row


def find_furniture(pages: list[PageItems]) -> tuple[dict[int, set[int]], list[str]]:
    """Per page number, the indexes of its furniture lines; and each running text once.

    The running texts are the header and footer lines as first seen, ``#`` for what
    changes from page to page (``Report 2024 — page #``); page numbers alone are not
    listed.
    """
    text_pages = [p for p in pages if p.has_text_layer and p.lines]
    edges = {p.number: _edge_rows(p.lines) for p in text_pages}
    seen: dict[_Key, list[_Seen]] = defaultdict(list)
    for page in text_pages:
        for edge, rows in edges[page.number].items():
            for k, row in enumerate(rows):
                for i in row:
                    line = page.lines[i]
                    where = _Seen(
                        page.number, _place(edge, line), line.text, (page.number, edge, k)
                    )
                    seen[_key(edge, line)].append(where)
    running = _running(seen, len(text_pages))
    furniture = {p.number: _page_furniture(p.lines, edges[p.number], running) for p in text_pages}
    keys = sorted(running, key=lambda key: (seen[key][0].page, seen[key][0].place))
    texts = [_pattern(seen[key]) for key in keys]
    return furniture, [t for t in texts if not PAGE_NUMBER.match(t.replace("#", "1"))]


def _pattern(seen: list[_Seen]) -> str:
    """The text as first seen, with ``#`` for the words that change from page to page."""
    words = seen[0].text.split()
    others = [s.text.split() for s in seen[1:]]
    return " ".join(
        "#" if any(len(o) == len(words) and o[k] != w for o in others) else w
        for k, w in enumerate(words)
    )


def _running(seen: dict[_Key, list[_Seen]], page_count: int) -> set[_Key]:
    """Keys of running headers and footers: with a number, on :data:`MIN_PAGES` pages;
    without, on :data:`MIN_PAGES_PLAIN`, or on :data:`MIN_PAGES` always in a row
    beside a running line with a number (``Meadow Quarterly … Issue 1 / 2021``)."""

    def repeats(key: _Key, pages_needed: int) -> bool:
        pages = {s.page for s in seen[key]}
        return len(pages) >= pages_needed and _same_place(seen[key], key[1])

    numbered = {key for key in seen if "#" in key[2] and repeats(key, MIN_PAGES)}
    rows = {s.row for key in numbered for s in seen[key]}
    plain = {
        key
        for key in seen
        if "#" not in key[2]
        and (
            repeats(key, min(MIN_PAGES_PLAIN, page_count))
            or (repeats(key, MIN_PAGES) and all(s.row in rows for s in seen[key]))
        )
    }
    return numbered | plain


def _same_place(seen: list[_Seen], size: float) -> bool:
    spots = sorted(s.place for s in seen)
    middle = spots[len(spots) // 2]
    close = sum(abs(place - middle) <= max(2.0, SAME_PLACE_HEIGHTS * size) for place in spots)
    return close >= 2


def _page_furniture(
    lines: list[Line], edges: dict[str, list[list[int]]], running: set[_Key]
) -> set[int]:
    out: set[int] = set()
    for edge, rows in edges.items():
        for row in rows:
            gone = [
                i
                for i in row
                if _key(edge, lines[i]) in running or PAGE_NUMBER.match(lines[i].text.strip())
            ]
            out.update(gone)
            if len(gone) < len(row):
                break
    return out
