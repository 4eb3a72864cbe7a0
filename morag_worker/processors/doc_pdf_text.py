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

from dataclasses import dataclass
from typing import Any

from morag_worker.processors.doc_pdf_items import Figure, Line, Table

#: A horizontal gap wider than this many line heights splits a line: narrower than
#: the narrowest gutters seen (about one em, 0.85 line heights), wider than word
#: spaces (0.2-0.3), even most of those stretched by justification.
GAP_HEIGHTS = 0.6
#: A superscript character is smaller than this share of its line's median height…
SUPERSCRIPT_SIZE = 0.85
#: …and its bottom sits at least this many line heights above the line's bottom.
SUPERSCRIPT_RISE = 0.15
#: Images and drawn shapes at least this large (points) are figures that steer reading order.
MIN_FIGURE_PT = (36.0, 18.0)


@dataclass(frozen=True, slots=True)
class _Char:
    index: int  # into the page text
    left: float
    right: float
    top: float
    bottom: float

    @property
    def height(self) -> float:
        return self.bottom - self.top


def _chars(textpage: Any, text: str, start: int, end: int, page_height: float) -> list[_Char]:
    import pypdfium2.raw as pdfium_c

    box = pdfium_c.FS_RECTF()
    chars: list[_Char] = []
    for i in range(start, end):
        if text[i].isspace():
            continue
        if pdfium_c.FPDFText_GetLooseCharBox(textpage.raw, i, box):
            top, bottom = page_height - box.top, page_height - box.bottom
            chars.append(_Char(i, box.left, box.right, top, bottom))
        elif chars:  # no box: keep the character at its neighbour's place
            prev = chars[-1]
            chars.append(_Char(i, prev.right, prev.right, prev.top, prev.bottom))
    return chars


def _same_row(a: _Char, b: _Char) -> bool:
    """Whether one's vertical middle lies within the other's extent."""
    return a.top <= (b.top + b.bottom) / 2 <= a.bottom or b.top <= (a.top + a.bottom) / 2 <= b.bottom


def _extent(piece: list[_Char]) -> tuple[float, float]:
    return min(c.top for c in piece), max(c.bottom for c in piece)


def _split(chars: list[_Char]) -> list[list[_Char]]:
    """pdfium's line cut where a character jumps a gutter away or to another row.

    A gutter is wider than :data:`GAP_HEIGHTS` line heights and more than twice the
    line's usual word space: justified narrow columns stretch every space of a line
    alike, a gutter stands out. A line with a single space is never cut: it cannot
    tell the two apart, and two columns written as one line rarely hold one word each.
    """
    gaps = [b.left - a.right for a, b in zip(chars, chars[1:], strict=False)]
    spaces = sorted(g for g, a in zip(gaps, chars, strict=False) if g > 0.15 * a.height)
    word_space = spaces[(len(spaces) - 1) // 2] if len(spaces) >= 2 else float("inf")
    pieces: list[list[_Char]] = []
    for k, char in enumerate(chars):
        if pieces:
            prev = pieces[-1][-1]
            least = GAP_HEIGHTS * max(min(prev.height, char.height), 1.0)
            if -least <= gaps[k - 1] <= max(least, 2 * word_space) and _same_row(prev, char):
                pieces[-1].append(char)
                continue
        pieces.append([char])
    return pieces


class _Row:
    """Characters on one visual line, with the running extent of the row."""

    def __init__(self, piece: list[_Char]) -> None:
        self.chars = list(piece)
        self.right = max(c.right for c in piece)
        self.top, self.bottom = _extent(piece)
        self.height = max(c.height for c in piece)

    def takes(self, piece: list[_Char], left: float, height: float) -> bool:
        limit = GAP_HEIGHTS * min(self.height, height)
        if not -limit <= left - self.right <= limit:
            return False
        top, bottom = _extent(piece)
        middle = (top + bottom) / 2
        return self.top <= middle <= self.bottom or top <= (self.top + self.bottom) / 2 <= bottom

    def add(self, piece: list[_Char]) -> None:
        self.chars += piece
        self.right = max(self.right, max(c.right for c in piece))
        top, bottom = _extent(piece)
        self.top, self.bottom = min(self.top, top), max(self.bottom, bottom)
        self.height = max(self.height, max(c.height for c in piece))


def _join_rows(pieces: list[list[_Char]]) -> list[list[_Char]]:
    """Pieces side by side on one visual line, a word space apart or less, joined."""
    rows: list[_Row] = []
    for piece in sorted(pieces, key=lambda p: min(c.left for c in p)):
        left, height = min(c.left for c in piece), max(c.height for c in piece)
        row = next((r for r in reversed(rows) if r.takes(piece, left, height)), None)
        if row is None:
            rows.append(_Row(piece))
        else:
            row.add(piece)
    return [row.chars for row in rows]


def _line(text: str, chars: list[_Char]) -> Line:
    heights = sorted(round(c.height * 2) / 2 for c in chars)
    middle = heights[len(heights) // 2]
    bottoms = sorted(c.bottom for c in chars)
    baseline = bottoms[len(bottoms) // 2]
    raised = [
        c.height < SUPERSCRIPT_SIZE * middle and c.bottom < baseline - SUPERSCRIPT_RISE * middle
        for c in chars
    ]
    if all(raised):
        raised = [False] * len(chars)
    out: list[str] = []
    length = 0
    ranges: list[tuple[int, int]] = []
    for k, char in enumerate(chars):
        if k:
            prev = chars[k - 1]
            between = text[prev.index + 1 : char.index] if char.index > prev.index else ""
            spaced = char.left - prev.right > 0.15 * middle
            if spaced or (between and not between.strip()) or char.index < prev.index:
                if spaced or not raised[k]:
                    out.append(" ")
                    length += 1
        if raised[k]:
            if ranges and ranges[-1][1] == length:
                ranges[-1] = (ranges[-1][0], length + 1)
            else:
                ranges.append((length, length + 1))
        out.append(text[char.index])
        length += 1
    body = [c for c, up in zip(chars, raised, strict=True) if not up]
    return Line(
        min(c.top for c in body),
        max(c.bottom for c in body),
        middle,
        "".join(out),
        min(c.left for c in chars),
        max(c.right for c in chars),
        tuple(ranges),
    )


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
        pieces: list[list[_Char]] = []
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


def has_vector_paths(page: Any) -> bool:
    import pypdfium2.raw as pdfium_c

    return any(True for _ in page.get_objects(filter=(pdfium_c.FPDF_PAGEOBJ_PATH,), max_depth=2))


def figures(page: Any, lines: list[Line]) -> list[Figure]:
    """Images and drawn shapes large enough to be figures, with no text line inside."""
    import pypdfium2.raw as pdfium_c

    kinds = (pdfium_c.FPDF_PAGEOBJ_IMAGE, pdfium_c.FPDF_PAGEOBJ_PATH)
    height = page.get_height()
    found = []
    for obj in page.get_objects(filter=kinds, max_depth=2):
        left, bottom, right, top = obj.get_bounds()
        box = (left, height - top, right, height - bottom)
        if right - left < MIN_FIGURE_PT[0] or top - bottom < MIN_FIGURE_PT[1]:
            continue
        if not any(_inside(line, box) for line in lines):
            found.append(Figure(box))
    return found


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
