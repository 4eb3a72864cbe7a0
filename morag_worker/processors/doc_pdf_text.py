"""Positioned text lines from pypdfium2's characters, figures, and ruled tables from pdfplumber.

pypdfium2 reads a page's text layer in a few milliseconds; pdfplumber (pdfminer) needs
tens of milliseconds a page to parse the same content. So lines always come from
pdfium, and pdfplumber is asked only about pages that draw vector paths, the only
pages whose ruled tables it can find.

pdfium breaks lines in content-stream order, which is not always the visual order:
two columns written row by row come out as one line across the gutter, and a raised
footnote marker often ends a line of its own. So lines are rebuilt from character
boxes: pdfium's lines are cut where the next character jumps a gutter's width to the
right (or back to the left), and pieces that sit side by side on one visual line, a
word space apart, are joined again. A character smaller than its line and raised is a
superscript (a footnote marker, an exponent).

A line's size is the median height of its characters' *loose* boxes (ascent to
descent, text matrix included). That is about 1.17 × the nominal font size and, unlike
the nominal size, is right for PDFs that set text at size 1 and scale it by matrix.
Coordinates are flipped to top-down so they compare with pdfplumber's.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any, NamedTuple

from morag_worker.processors.doc_pdf_items import Figure, Line, Table

#: A horizontal gap wider than this many line heights splits a line: narrower than
#: the narrowest gutters seen (about one em, 0.85 line heights), wider than word
#: spaces (0.2-0.3), even most of those stretched by justification.
GAP_HEIGHTS = 0.6
#: Pieces of fewer characters are never cut off a line (bullets, numbers).
MIN_PIECE_CHARS = 4
#: A superscript character is smaller than this share of its line's median height…
SUPERSCRIPT_SIZE = 0.85
#: …and its bottom sits at least this many line heights above the line's bottom.
SUPERSCRIPT_RISE = 0.15
#: Height of the buckets that find rows (points): a few per line.
_BUCKET_PT = 4.0
#: Images and drawn shapes at least this large (points) are figures that steer reading order.
MIN_FIGURE_PT = (36.0, 18.0)


class _Char(NamedTuple):  # a tuple: pages have thousands, and tuples are quick to make
    at: int  # index into the page text
    left: float
    right: float
    top: float
    bottom: float
    height: float


class _Piece:
    """Characters on one visual line, with their running extent."""

    __slots__ = ("bottom", "chars", "height", "left", "right", "top")

    def __init__(self, chars: list[_Char]) -> None:
        self.chars = chars
        self.left, self.right = min(c.left for c in chars), max(c.right for c in chars)
        self.top, self.bottom = min(c.top for c in chars), max(c.bottom for c in chars)
        self.height = max(c.height for c in chars)

    def add(self, other: _Piece) -> None:
        self.chars += other.chars
        self.left, self.right = min(self.left, other.left), max(self.right, other.right)
        self.top, self.bottom = min(self.top, other.top), max(self.bottom, other.bottom)
        self.height = max(self.height, other.height)

    def beside(self, other: _Piece) -> bool:
        """Whether one's vertical middle lies within the other's extent."""
        return (
            self.top <= (other.top + other.bottom) / 2 <= self.bottom
            or other.top <= (self.top + self.bottom) / 2 <= other.bottom
        )


def _chars(textpage: Any, text: str, start: int, end: int, page_height: float) -> list[_Char]:
    import pypdfium2.raw as pdfium_c

    box, raw, loose_box = pdfium_c.FS_RECTF(), textpage.raw, pdfium_c.FPDFText_GetLooseCharBox
    chars: list[_Char] = []
    for i in range(start, end):
        if text[i].isspace():
            continue
        if loose_box(raw, i, box):
            top, bottom = page_height - box.top, page_height - box.bottom
            chars.append(_Char(i, box.left, box.right, top, bottom, bottom - top))
        elif chars:  # no box: keep the character at its neighbour's place
            prev = chars[-1]
            chars.append(_Char(i, prev.right, prev.right, prev.top, prev.bottom, prev.height))
    return chars


def _split(chars: list[_Char]) -> list[_Piece]:
    """pdfium's line cut where a character jumps a gutter away or to another row.

    A gutter is wider than :data:`GAP_HEIGHTS` line heights and more than twice the
    line's usual word space: justified narrow columns stretch every space of a line
    alike, a gutter stands out. A line with a single space is never cut: it cannot
    tell the two apart, and two columns written as one line rarely hold one word each.
    Nor is a piece of fewer than :data:`MIN_PIECE_CHARS` characters cut off: that is a
    bullet, an item number or a page number in a table of contents, not a column.
    A character may start where the previous one did (a ligature's second letter).
    """
    if not chars:
        return []
    gaps = [b.left - a.right for a, b in itertools.pairwise(chars)]
    floor = GAP_HEIGHTS * max(min(c.height for c in chars), 1.0)
    if all(-floor <= g <= floor for g in gaps) and max(c.top for c in chars) < min(
        c.bottom for c in chars
    ):  # the common case: nothing wide, one row
        return [_Piece(chars)]
    spaces = sorted(g for g, a in zip(gaps, chars, strict=False) if g > 0.15 * a.height)
    widest = 2 * spaces[(len(spaces) - 1) // 2] if len(spaces) >= 2 else float("inf")
    starts = [0]
    for k, gap in enumerate(gaps, 1):
        prev, char = chars[k - 1], chars[k]
        least = GAP_HEIGHTS * max(min(prev.height, char.height), 1.0)
        same_row = (
            prev.top <= (char.top + char.bottom) / 2 <= prev.bottom
            or char.top <= (prev.top + prev.bottom) / 2 <= char.bottom
        )
        jumps = gap > max(least, widest) or char.left < prev.left - least
        long_enough = k - starts[-1] >= MIN_PIECE_CHARS and len(chars) - k >= MIN_PIECE_CHARS
        if not same_row or (jumps and long_enough):
            starts.append(k)
    return [_Piece(chars[a:b]) for a, b in zip(starts, [*starts[1:], len(chars)], strict=True)]


def _join_rows(pieces: list[_Piece]) -> list[_Piece]:
    """Pieces side by side on one visual line, a word space apart or less, joined.

    Rows are found through buckets of their vertical extent, so a page of many lines
    is not compared line against line.
    """
    rows: list[_Piece] = []
    buckets: dict[int, list[_Piece]] = {}
    for piece in sorted(pieces, key=lambda p: p.left):
        found = None
        for bucket in range(int(piece.top // _BUCKET_PT), int(piece.bottom // _BUCKET_PT) + 1):
            for row in buckets.get(bucket, ()):
                limit = GAP_HEIGHTS * min(row.height, piece.height)
                if -limit <= piece.left - row.right <= limit and row.beside(piece):
                    found = row
                    break
            if found:
                break
        if found is None:
            rows.append(piece)
            found = piece
        else:
            found.add(piece)
        for bucket in range(int(found.top // _BUCKET_PT), int(found.bottom // _BUCKET_PT) + 1):
            if found not in buckets.setdefault(bucket, []):
                buckets[bucket].append(found)
    return rows


def _line(text: str, piece: _Piece) -> Line:
    chars = piece.chars
    heights = sorted(round(c.height * 2) / 2 for c in chars)
    middle = heights[len(heights) // 2]
    baseline = sorted(c.bottom for c in chars)[len(chars) // 2]
    small, low = SUPERSCRIPT_SIZE * middle, baseline - SUPERSCRIPT_RISE * middle
    raised = [c.height < small and c.bottom < low for c in chars]
    if all(raised):
        raised = [False] * len(chars)
    out: list[str] = []
    length = 0
    ranges: list[tuple[int, int]] = []
    prev = None
    for char, up in zip(chars, raised, strict=True):
        if prev is not None:
            spaced = char.left - prev.right > 0.15 * middle
            gap_text = char.at != prev.at + 1 and not text[prev.at + 1 : char.at].strip()
            if spaced or (not up and (gap_text or char.at < prev.at)):
                out.append(" ")
                length += 1
        if up:
            if ranges and ranges[-1][1] == length:
                ranges[-1] = (ranges[-1][0], length + 1)
            else:
                ranges.append((length, length + 1))
        out.append(text[char.at])
        length += 1
        prev = char
    body = [c for c, up in zip(chars, raised, strict=True) if not up]
    top = min(c.top for c in body)
    bottom = max(c.bottom for c in body)
    return Line(top, bottom, middle, "".join(out), piece.left, piece.right, tuple(ranges))


def pdfium_lines(page: Any) -> list[Line]:
    """The page's text lines with loose-box size, position and superscripts."""
    textpage = page.get_textpage()
    try:
        count = textpage.count_chars()
        text = textpage.get_text_range(0, count)
        if len(text) != count:  # surrogate pairs shift indexes; keep the text, drop sizes
            rows = [row.strip() for row in text.replace("\r", "\n").split("\n")]
            return [Line(float(i), i + 0.8, 0.0, row) for i, row in enumerate(rows) if row]
        height = page.get_height()
        pieces: list[_Piece] = []
        start = 0
        for i in range(count + 1):
            if i == count or text[i] in "\r\n":
                pieces += _split(_chars(textpage, text, start, i, height))
                start = i + 1
        lines = [_line(text, row) for row in _join_rows(pieces)]
        lines.sort(key=lambda line: (line.top, line.x0))
        return lines
    finally:
        textpage.close()


def drawn_objects(page: Any, lines: list[Line]) -> tuple[bool, list[Figure]]:
    """Whether the page draws vector paths (so may hold a ruled table), and its figures:
    images and shapes of at least :data:`MIN_FIGURE_PT` with no text line inside.

    Walks pdfium's object list directly (and one level into form XObjects): wrapping
    every text object in Python would cost more than reading the page's text.
    """
    import ctypes

    import pypdfium2.raw as pdfium_c

    height = page.get_height()
    bounds = [ctypes.c_float() for _ in range(4)]
    paths, found = False, []
    for obj, kind in _objects(page.raw, pdfium_c):
        paths = paths or kind == pdfium_c.FPDF_PAGEOBJ_PATH
        if not pdfium_c.FPDFPageObj_GetBounds(obj, *(ctypes.byref(b) for b in bounds)):
            continue
        left, bottom, right, top = (b.value for b in bounds)
        if right - left < MIN_FIGURE_PT[0] or top - bottom < MIN_FIGURE_PT[1]:
            continue
        box = (left, height - top, right, height - bottom)
        if not any(_inside(line, box) for line in lines):
            found.append(Figure(box))
    return paths, found


def _objects(raw_page: Any, pdfium_c: Any) -> Iterator[tuple[Any, int]]:
    """Image and path objects of a page, and of the form XObjects drawn on it."""
    wanted = (pdfium_c.FPDF_PAGEOBJ_IMAGE, pdfium_c.FPDF_PAGEOBJ_PATH)
    for i in range(pdfium_c.FPDFPage_CountObjects(raw_page)):
        obj = pdfium_c.FPDFPage_GetObject(raw_page, i)
        kind = pdfium_c.FPDFPageObj_GetType(obj)
        if kind in wanted:
            yield obj, kind
        elif kind == pdfium_c.FPDF_PAGEOBJ_FORM:
            for k in range(pdfium_c.FPDFFormObj_CountObjects(obj)):
                inner = pdfium_c.FPDFFormObj_GetObject(obj, k)
                inner_kind = pdfium_c.FPDFPageObj_GetType(inner)
                if inner_kind in wanted:
                    yield inner, inner_kind


def ruled_tables(plumber_page: Any) -> list[Table]:
    """Tables drawn with ruling lines, as pdfplumber finds them (top-down coordinates)."""
    return [Table(t.bbox[1], t.bbox, t.extract()) for t in plumber_page.find_tables()]


def _inside(line: Line, box: tuple[float, float, float, float]) -> bool:
    """Whether the line's vertical middle is inside the box and the two overlap horizontally."""
    middle = (line.top + line.bottom) / 2
    return box[1] <= middle <= box[3] and line.x0 < box[2] and line.x1 > box[0]


def outside_tables(lines: list[Line], tables: list[Table]) -> list[Line]:
    """Lines not inside any table (by vertical middle and horizontal overlap)."""
    return [line for line in lines if not any(_inside(line, t.bbox) for t in tables)]
