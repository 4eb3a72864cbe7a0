"""PDF conversion on the real fixtures: structure from text layers, OCR for scans."""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import pytest

from morag_worker.errors import Cancelled, ModelMissing
from morag_worker.processors.base import TaskContext
from morag_worker.processors.doc_pdf_layout import Line, PageItems, render_pages, table_markdown
from morag_worker.processors.document import DocumentProcessor
from morag_worker.processors.settings import ProcessorSettings
from morag_worker.protocol import TaskResult

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("OMP_THREAD_LIMIT", "1")

FIXTURES = Path(__file__).parents[1] / "fixtures"
DOCS = FIXTURES / "documents"
_spec = importlib.util.spec_from_file_location("gen_documents", FIXTURES / "gen_documents.py")
assert _spec and _spec.loader
gen_documents = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen_documents)


def context(path: Path, cancelled: bool = False) -> TaskContext:
    return TaskContext.local("document", [path], cancelled=lambda: cancelled)


def run(path: Path) -> TaskResult:
    return DocumentProcessor().process(context(path))


def headings(markdown: str) -> list[tuple[int, str]]:
    return [(len(m[1]), m[2]) for m in re.finditer(r"^(#{1,6}) (.+)$", markdown, re.M)]


def edit_distance(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def test_text_pdf_structure_pages_and_metadata() -> None:
    result = run(DOCS / "text.pdf")
    assert headings(result.content) == [
        (1, "Climate Brief"),
        (2, "Measurements"),
        (3, "Procedure"),
        (2, "Outlook"),
    ]
    assert "| Instrument | Reading | Unit |\n| --- | --- | --- |\n| Thermometer | 21.5 | C |" in (
        result.content
    )
    steps = "\n".join(f"- {step}" for step in gen_documents.PDF_STEPS)
    assert steps in result.content
    # the wrapped paragraph is one paragraph again, and the footer page numbers are gone
    assert gen_documents.LONG_PARAGRAPH in result.content
    assert not re.search(r"^\d+$", result.content, re.M)
    meta = result.metadata
    assert (meta["format"], meta["pages"], meta["title"], meta["author"]) == (
        "pdf",
        2,
        "Climate Brief",
        "Ada Lovelace",
    )
    assert meta["created"] == "2024-05-17T09:30:00Z"
    assert "ocr_pages" not in meta
    pages = {c.page for c in result.chunks if "Projections for the next decade" in c.text}
    assert pages == {2}
    assert any(gen_documents.PHRASES["text.pdf"] in c.text and c.page == 1 for c in result.chunks)


def test_scanned_pdf_goes_through_ocr() -> None:
    result = run(DOCS / "scanned.pdf")
    assert result.metadata["ocr_pages"] == [1]
    assert result.metadata["ocr_confidence"] > 0.8
    expected = " ".join(gen_documents.SCANNED_LINES)
    body = result.content.split("-->", 1)[1]
    got = " ".join(body.split())
    cer = edit_distance(got, expected) / len(expected)
    assert cer <= 0.03, (cer, got)
    phrase = gen_documents.PHRASES["scanned.pdf"]
    assert any(phrase in c.text and c.page == 1 for c in result.chunks)


def test_cancellation_is_checked_between_pages() -> None:
    with pytest.raises(Cancelled):
        DocumentProcessor().process(context(DOCS / "text.pdf", cancelled=True))


def test_heading_levels_follow_font_sizes() -> None:
    lines = [
        Line(10, 30, 24.0, "Big Title"),
        Line(40, 52, 11.0, "body text " * 5),
        Line(60, 76, 16.0, "Section"),
        Line(80, 92, 11.0, "more body text " * 5),
        Line(95, 107, 11.0, "continued on the next line"),
        Line(130, 142, 11.0, "(1) a numbered point"),
        Line(143, 155, 11.0, "2) another point"),
    ]
    [(_, body)] = render_pages([PageItems(1, lines, [])])
    blocks = body.split("\n\n")
    assert blocks[0] == "# Big Title" and blocks[2] == "## Section"
    assert blocks[3].endswith("more body text continued on the next line")
    assert blocks[4] == "(1) a numbered point\n2) another point"


def test_table_markdown_escapes_pipes_and_pads_rows() -> None:
    table = table_markdown([["a", "b|c"], ["1"], [None, None], ["x\ny", "z"]])
    assert table == "| a | b\\|c |\n| --- | --- |\n| 1 |  |\n| x y | z |"


def test_docling_pdf_pipeline_without_its_models_is_model_missing(tmp_path: Path) -> None:
    # docling's PDF extras (docling-parse, docling-ibm-models, torch) are not part of the
    # documents extra; asking for the pipeline must name what to install, not download.
    cases = [(tmp_path / "absent", "is not a directory")]
    if importlib.util.find_spec("docling_ibm_models") is None:
        cases.append((tmp_path, "docling's PDF pipeline is not installed"))
    for artifacts, message in cases:
        ctx = context(DOCS / "text.pdf")
        settings = ProcessorSettings(docling_artifacts_path=str(artifacts))
        ctx = TaskContext(**{**ctx.__dict__, "settings": settings})
        with pytest.raises(ModelMissing, match=message) as caught:
            DocumentProcessor().process(ctx)
        assert "docling-slim[format-pdf,models-local]" in caught.value.message
