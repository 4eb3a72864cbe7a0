"""Documents that cost far more than their size are refused, early, naming the flag.

Hostile files are generated at test time (``tests/fixtures/hostile_documents.py``): DOCX
bombs in several layouts under the zip guard's ratio, a million-cell XLSX, a deck with
thousands of slides, PDFs with 20,000 pages or a page tree that lies. The limits that
act during conversion (time, memory) are tested with small settings on files that are
otherwise fine. After every refusal the same processor still converts a good file.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from morag_worker.errors import BadInput
from morag_worker.processors.base import TaskContext
from morag_worker.processors.document import DocumentProcessor
from morag_worker.processors.settings import ProcessorSettings
from morag_worker.protocol import TaskResult

FIXTURES = Path(__file__).parents[1] / "fixtures"
sys.path.insert(0, str(FIXTURES))
import hostile_documents as hostile  # noqa: E402

GOOD = FIXTURES / "documents" / "sample.docx"


@pytest.fixture(scope="module")
def processor() -> DocumentProcessor:
    return DocumentProcessor()


def convert(processor: DocumentProcessor, path: Path, **overrides: Any) -> TaskResult:
    settings = ProcessorSettings(**overrides)
    return processor.process(TaskContext.local("document", [path], settings=settings))


def refused(processor: DocumentProcessor, path: Path, pattern: str, **overrides: Any) -> str:
    """Assert ``path`` is non-retryable bad input matching ``pattern``; then that the
    processor still converts a good file."""
    with pytest.raises(BadInput, match=pattern) as caught:
        convert(processor, path, **overrides)
    assert caught.value.retryable is False
    assert caught.value.message.startswith(f"{path.name}: ")
    assert "calibration drift" in convert(processor, GOOD).content
    return caught.value.message


@pytest.mark.parametrize("layout", ["paragraphs", "table", "long_paragraph", "header"])
def test_docx_bomb_under_the_ratio_limit_is_refused_by_its_xml_size(
    processor: DocumentProcessor, tmp_path: Path, layout: str
) -> None:
    path = hostile.docx_bomb(tmp_path / f"{layout}.docx", 63_000_000, layout)
    assert path.stat().st_size < 1_000_000  # about 120× smaller than it inflates
    message = refused(processor, path, r"part word/\w+\.xml inflates to 62,9\d\d,\d\d\d bytes")
    assert "the limit is 33,554,432 per part" in message
    assert "--doc-max-xml-part-bytes" in message


def test_xml_of_all_parts_together_is_bounded(processor: DocumentProcessor) -> None:
    message = refused(
        processor, GOOD, r"its XML inflates to [\d,]+ bytes", doc_max_xml_bytes=20_000
    )
    assert "the limit is 20,000 per document" in message and "--doc-max-xml-bytes" in message


@pytest.mark.parametrize(
    ("name", "encoding"),
    [
        ("word/media/image9.png", "utf-8"),
        ("word/footnotes.xml", "utf-16"),
        ("customXml/x", "utf-8"),
    ],
)
def test_xml_parts_are_found_by_content_not_by_name(
    processor: DocumentProcessor, tmp_path: Path, name: str, encoding: str
) -> None:
    """A name or an encoding must not hide XML from the caps: a package's content types,
    not its names, tell a library what a part is, and XML parsers read UTF-16."""
    body = "<w:p><w:r><w:t>water level</w:t></w:r></w:p>" * 20_000
    payload = f'<?xml version="1.0"?><w:ftr {hostile.W}>{body}</w:ftr>'.encode(encoding)
    path = hostile.docx_with_part(tmp_path / "hidden.docx", name, payload)
    refused(processor, path, rf"part {name} inflates to", doc_max_xml_part_bytes=600_000)
    refused(processor, path, r"at least [\d,]+ paragraphs", doc_max_elements=15_000)


@pytest.mark.parametrize(
    ("make", "what"),
    [
        (lambda p: hostile.docx_paragraphs(p / "paragraphs.docx", 150_000), "paragraphs"),
        (lambda p: hostile.docx_bomb(p / "table.docx", 8_000_000, "table"), "table"),
        (lambda p: hostile.xlsx_cells(p / "million.xlsx", 100_000, 10), "cells"),
        (lambda p: hostile.xlsx_cells(p / "sheets.xlsx", 30_000, 2, sheets=3), "sheets"),
    ],
)
def test_too_many_elements_are_refused(
    processor: DocumentProcessor, tmp_path: Path, make: Any, what: str
) -> None:
    path = make(tmp_path)
    message = refused(processor, path, r"it holds at least [\d,]+ paragraphs, table rows and cells")
    assert "the limit is 100,000 per document" in message and "--doc-max-elements" in message


def test_html_with_too_many_blocks_is_refused(processor: DocumentProcessor, tmp_path: Path) -> None:
    path = tmp_path / "long.html"
    rows = "".join(f"<tr><td>{i}</td><td>x</td></tr>" for i in range(40_000))
    path.write_text(f"<html><body><h1>T</h1><table>{rows}</table></body></html>")
    refused(processor, path, r"120,001 paragraphs, list items and table cells.*--doc-max-elements")


def test_deck_with_thousands_of_slides_is_refused(
    processor: DocumentProcessor, tmp_path: Path
) -> None:
    path = hostile.pptx_slides(tmp_path / "deck.pptx", 3_000)
    message = refused(processor, path, r"it has 3,000 slides; the limit is 2,000 per file")
    assert "--doc-max-pages" in message


def test_workbook_with_many_sheets_is_refused(processor: DocumentProcessor, tmp_path: Path) -> None:
    path = hostile.xlsx_cells(tmp_path / "sheets.xlsx", 1, 1, sheets=12)
    refused(processor, path, r"it has 12 sheets; the limit is 10 per file", doc_max_pages=10)


def test_pdf_with_twenty_thousand_pages_is_refused(
    processor: DocumentProcessor, tmp_path: Path
) -> None:
    path = hostile.pdf_pages(tmp_path / "empty.pdf", 20_000)
    message = refused(processor, path, r"it has 20,000 pages; the limit is 2,000 per file")
    assert "--doc-max-pages" in message


def test_pdf_whose_page_tree_claims_twenty_thousand_pages_is_refused(
    processor: DocumentProcessor, tmp_path: Path
) -> None:
    path = hostile.pdf_lying_count(tmp_path / "lying.pdf", 20_000)
    refused(processor, path, r"it has 20,000 pages; the limit is 2,000 per file")


def test_docling_conversion_is_interrupted_at_its_deadline(
    processor: DocumentProcessor, tmp_path: Path
) -> None:
    """20,000 paragraphs pass every count but take several seconds: docling does not poll,
    so the budget interrupts it."""
    path = hostile.docx_paragraphs(tmp_path / "slow.docx", 20_000)
    message = refused(processor, path, r"converting it took over 1 s", doc_convert_timeout_s=1)
    assert "not retried" in message and "--doc-convert-timeout-s" in message


def test_pdf_conversion_stops_between_pages_at_its_deadline(
    processor: DocumentProcessor, tmp_path: Path
) -> None:
    """Empty pages have no text: each goes to OCR, about a second apiece."""
    pytest.importorskip("PIL")
    path = hostile.pdf_pages(tmp_path / "blank.pdf", 200)
    refused(processor, path, r"took over 2 s.*--doc-convert-timeout-s", doc_convert_timeout_s=2)


def test_conversion_that_outgrows_its_memory_budget_is_stopped(
    processor: DocumentProcessor, tmp_path: Path
) -> None:
    path = hostile.docx_paragraphs(tmp_path / "big.docx", 20_000)
    message = refused(
        processor, path, r"needed over 20,971,520 bytes of memory", doc_max_memory_bytes=20 * 2**20
    )
    assert "--doc-max-memory-bytes" in message


def test_documents_within_the_limits_still_convert(
    processor: DocumentProcessor, tmp_path: Path
) -> None:
    """Files just under each count convert (the checks count, they do not guess)."""
    deck = convert(processor, hostile.pptx_slides(tmp_path / "deck.pptx", 20), doc_max_pages=20)
    assert deck.metadata["pages"] == 20
    sheet = hostile.xlsx_cells(tmp_path / "sheet.xlsx", 500, 4)  # 500 rows + 2,000 cells
    assert "| 1500 |" in convert(processor, sheet, doc_max_elements=2_500).content
    pdf = convert(processor, hostile.pdf_pages(tmp_path / "two.pdf", 2), doc_max_pages=2)
    assert pdf.metadata["pages"] == 2
