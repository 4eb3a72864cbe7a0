"""Positioned text lines from pypdfium2, and ruled tables from pdfplumber.

pypdfium2 reads a page's text layer in a few milliseconds; pdfplumber (pdfminer) needs
tens of milliseconds a page to parse the same content. So lines always come from
pdfium, and pdfplumber is asked only about pages that draw vector paths, the only
pages whose ruled tables it can find.

A line's size is the median height of its characters' *loose* boxes (ascent to
descent, text matrix included). That is about 1.17 × the nominal font size and, unlike
the nominal size, is right for PDFs that set text at size 1 and scale it by matrix.
Coordinates are flipped to top-down so they compare with pdfplumber's.
"""

from __future__ import annotations

from typing import Any

from morag_worker.processors.doc_pdf_layout import Line, Table


def _line(textpage: Any, text: str, start: int, end: int, page_height: float) -> Line | None:
    import pypdfium2.raw as pdfium_c

    box = pdfium_c.FS_RECTF()
    heights: list[float] = []
    top, bottom, left, right = float("inf"), float("-inf"), float("inf"), float("-inf")
    for i in range(start, end):
        if text[i].isspace() or not pdfium_c.FPDFText_GetLooseCharBox(textpage.raw, i, box):
            continue
        heights.append(round((box.top - box.bottom) * 2) / 2)
        top, bottom = min(top, page_height - box.top), max(bottom, page_height - box.bottom)
        left, right = min(left, box.left), max(right, box.right)
    if not heights:
        return None
    heights.sort()
    return Line(top, bottom, heights[len(heights) // 2], text[start:end].strip(), left, right)


def pdfium_lines(page: Any) -> list[Line]:
    """The page's text lines in pdfium's order, with loose-box size and position."""
    textpage = page.get_textpage()
    try:
        count = textpage.count_chars()
        text = textpage.get_text_range(0, count)
        if len(text) != count:  # surrogate pairs shift indexes; keep the text, drop sizes
            rows = [row.strip() for row in text.replace("\r", "\n").split("\n")]
            return [Line(float(i), i + 0.8, 0.0, row) for i, row in enumerate(rows) if row]
        height = page.get_height()
        lines, start = [], 0
        for i in range(count + 1):
            if i == count or text[i] in "\r\n":
                if line := _line(textpage, text, start, i, height):
                    lines.append(line)
                start = i + 1
        return lines
    finally:
        textpage.close()


def has_vector_paths(page: Any) -> bool:
    import pypdfium2.raw as pdfium_c

    return any(True for _ in page.get_objects(filter=(pdfium_c.FPDF_PAGEOBJ_PATH,), max_depth=2))


def ruled_tables(plumber_page: Any) -> list[Table]:
    """Tables drawn with ruling lines, as pdfplumber finds them (top-down coordinates)."""
    return [Table(t.bbox[1], t.bbox, t.extract()) for t in plumber_page.find_tables()]


def outside_tables(lines: list[Line], tables: list[Table]) -> list[Line]:
    """Lines not inside any table (by vertical middle and horizontal overlap)."""

    def inside(line: Line, box: tuple[float, float, float, float]) -> bool:
        middle = (line.top + line.bottom) / 2
        return box[1] <= middle <= box[3] and line.x0 < box[2] and line.x1 > box[0]

    return [line for line in lines if not any(inside(line, t.bbox) for t in tables)]
