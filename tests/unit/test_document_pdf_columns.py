"""The parts of PDF layout on their own: line extraction, reading order, furniture, notes.

Lines are made by hand where the geometry is the point; PDFs are drawn with fpdf2 into
``tmp_path`` where what pdfium makes of a content stream is the point.
"""

from __future__ import annotations

from pathlib import Path

import pypdfium2 as pdfium

from morag_worker.processors.doc_pdf_columns import Region, reading_order
from morag_worker.processors.doc_pdf_furniture import find_furniture
from morag_worker.processors.doc_pdf_items import Line, PageItems
from morag_worker.processors.doc_pdf_layout import render_document
from morag_worker.processors.doc_pdf_text import pdfium_lines

WORDS = [
    "river",
    "stone",
    "meadow",
    "copper",
    "lantern",
    "harbor",
    "signal",
    "timber",
    "orchard",
    "velvet",
]


def words(seed: int, count: int) -> str:
    return " ".join(WORDS[(seed * 7 + k * 3) % len(WORDS)] for k in range(count))


def column(x0: float, x1: float, top: float, count: int, pitch: float = 12.0) -> list[Region]:
    return [Region(x0, top + k * pitch, x1, top + k * pitch + 10, 40, 10.0) for k in range(count)]


def flows_of(regions: list[Region]) -> list[list[int]]:
    return reading_order(regions)


def test_two_columns_read_left_then_right_even_with_offset_rows() -> None:
    left = column(50, 290, 100, 20)
    right = column(310, 550, 106, 20)  # baselines half a line apart
    regions = [r for pair in zip(left, right, strict=True) for r in pair]  # stream interleaves
    flows = flows_of(regions)
    assert [sorted(f) for f in flows] == [list(range(0, 40, 2)), list(range(1, 40, 2))]


def test_full_width_lines_stay_between_column_stretches() -> None:
    title = [Region(50, 60, 550, 80, 30, 20.0)]
    band1 = column(50, 290, 100, 8) + column(310, 550, 100, 6)  # unbalanced
    figure = [Region(50, 200, 550, 300)]  # a figure across the page, no text
    band2 = column(50, 170, 310, 10) + column(190, 360, 310, 10) + column(380, 550, 310, 9)
    regions = title + band1 + figure + band2
    order = [i for flow in flows_of(regions) for i in flow]
    assert order == list(range(len(regions)))


def test_a_centred_title_over_the_middle_column_is_read_first() -> None:
    title = [Region(230, 60, 330, 76, 14, 16.0)]  # narrower than the middle column
    band = column(50, 190, 100, 10) + column(210, 350, 100, 10) + column(370, 510, 100, 10)
    order = [i for flow in flows_of(title + band) for i in flow]
    assert order == list(range(31))


def test_a_borderless_table_and_an_option_list_stay_row_by_row() -> None:
    table = []
    for k in range(6):  # short cells: name, value, unit
        table += [
            Region(50, 100 + 12 * k, 120, 110 + 12 * k, 9, 10.0),
            Region(200, 100 + 12 * k, 230, 110 + 12 * k, 4, 10.0),
            Region(300, 100 + 12 * k, 320, 110 + 12 * k, 2, 10.0),
        ]
    options = []
    for k in range(5):  # long enough cells, but the right side ends far short of the margin
        options += [
            Region(60, 300 + 12 * k, 160, 310 + 12 * k, 16, 10.0),
            Region(230, 300 + 12 * k, 380, 310 + 12 * k, 30, 10.0),
        ]
    prose = column(50, 550, 400, 3)
    regions = table + options + prose
    assert [i for flow in flows_of(regions) for i in flow] == list(range(len(regions)))


def test_definition_list_terms_stay_with_their_descriptions() -> None:
    regions: list[Region] = []
    for k in range(4):  # a term beside a description of three lines reaching the margin
        top = 100 + 50 * k
        regions.append(Region(50, top, 130, top + 10, 12, 10.0))
        regions += column(200, 550, top, 3)
    order = [i for flow in flows_of(regions) for i in flow]
    assert order == list(range(len(regions)))


def _pdf(path: Path, draw: object) -> pdfium.PdfDocument:
    from fpdf import FPDF

    pdf = FPDF(unit="pt", format="A4")
    pdf.add_page()
    pdf.set_font("Helvetica", "", 10)
    draw(pdf)  # type: ignore[operator]
    pdf.output(str(path))
    return pdfium.PdfDocument(str(path))


def test_columns_written_row_by_row_come_apart(tmp_path: Path) -> None:
    # Some producers write both columns' lines row by row; pdfium then reads one line
    # straight across the gutter. The lines are cut at the gutter and read per column.
    def draw(pdf: object) -> None:
        for k in range(12):
            pdf.text(50, 100 + 12 * k, f"left {words(k, 5)} {k}.")  # type: ignore[attr-defined]
            pdf.text(310, 100 + 12 * k, f"right {words(k + 20, 5)} {k}.")  # type: ignore[attr-defined]

    doc = _pdf(tmp_path / "rows.pdf", draw)
    lines = pdfium_lines(doc[0])
    assert len(lines) == 24 and all(" right " not in f" {line.text} " for line in lines[::2])
    ((_, body),) = render_document([PageItems(1, lines, [])]).pages
    texts = body.replace("\n", " ")
    assert texts.index("right") > texts.index(f"left {words(11, 5)} 11.")


def test_a_raised_marker_stays_on_its_word(tmp_path: Path) -> None:
    def draw(pdf: object) -> None:
        pdf.set_xy(50, 100)  # type: ignore[attr-defined]
        pdf.write(12, "The harbor")  # type: ignore[attr-defined]
        pdf.char_vpos = "SUP"  # type: ignore[attr-defined]
        pdf.write(12, "7")  # type: ignore[attr-defined]
        pdf.char_vpos = "LINE"  # type: ignore[attr-defined]
        pdf.write(12, " opened at dawn.")  # type: ignore[attr-defined]

    doc = _pdf(tmp_path / "sup.pdf", draw)
    (line,) = pdfium_lines(doc[0])
    assert line.text == "The harbor7 opened at dawn."
    assert [line.text[a:b] for a, b in line.superscripts] == ["7"]


def _line(top: float, text: str, size: float = 12.0, x0: float = 50.0, sups: tuple = ()) -> Line:
    return Line(top, top + size, size, text, x0, x0 + 6 * len(text), sups)


def test_running_header_with_page_numbers_is_found_and_listed_once() -> None:
    pages = []
    for number in range(1, 5):
        lines = [
            _line(20, f"Report 2024 \u2014 page {number}", size=9.0),
            _line(60, words(number, 9)),
            _line(74, words(number + 1, 9)),
            _line(800, str(number), size=9.0),
        ]
        pages.append(PageItems(number, lines, []))
    furniture, running = find_furniture(pages)
    assert all(furniture[n] == {0, 3} for n in range(1, 5))
    assert running == ["Report 2024 \u2014 page #"]


def test_footnotes_restarting_per_page_get_labels_of_their_own() -> None:
    pages = []
    for number in (1, 2):
        text = f"The {WORDS[number]} rose1 at dawn."
        marker = text.index("rose1") + 4
        body = _line(100, text, sups=((marker, marker + 1),))
        note = Line(700, 709, 8.0, f"1 A note on the {WORDS[number]}.", 50, 200, ((0, 1),))
        pages.append(PageItems(number, [body, _line(114, words(number, 8) + "."), note], []))
    rendered = render_document(pages)
    first, second = (body for _, body in rendered.pages)
    assert "rose[^1] at dawn." in first and first.endswith("[^1]: A note on the stone.")
    assert "rose[^p2-1] at dawn." in second and second.endswith("[^p2-1]: A note on the meadow.")
