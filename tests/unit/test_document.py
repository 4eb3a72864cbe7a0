"""DocumentProcessor on the real fixtures: text, Markdown, HTML, EML and Office formats.

The fixtures come from ``tests/fixtures/gen_documents.py``; its ``PHRASES`` name one
sentence per fixture that must survive conversion and land in some chunk.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
from pathlib import Path

import pytest

from morag_worker.errors import BadInput
from morag_worker.models.cache import ModelCache
from morag_worker.processors.base import TaskContext, load_processor
from morag_worker.processors.document import DocumentProcessor
from morag_worker.processors.settings import ProcessorSettings
from morag_worker.protocol import TaskResult

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")

FIXTURES = Path(__file__).parents[1] / "fixtures"
DOCS = FIXTURES / "documents"
_spec = importlib.util.spec_from_file_location("gen_documents", FIXTURES / "gen_documents.py")
assert _spec and _spec.loader
gen_documents = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen_documents)
PHRASES: dict[str, str] = gen_documents.PHRASES


@pytest.fixture(scope="module")
def processor() -> DocumentProcessor:
    return DocumentProcessor()


def run(
    processor: DocumentProcessor,
    path: Path,
    name: str | None = None,
    settings: ProcessorSettings | None = None,
) -> TaskResult:
    ctx = TaskContext(
        task_id="t1",
        task_type="document",
        parameters={},
        inputs=[path],
        input_names=[name or path.name],
        work_dir=path.parent,
        device="cpu",
        models=ModelCache(),
        settings=settings or ProcessorSettings(),
    )
    return processor.process(ctx)


def headings(markdown: str) -> list[tuple[int, str]]:
    return [(len(m.group(1)), m.group(2)) for m in re.finditer(r"^(#{1,6}) (.+)$", markdown, re.M)]


def test_registry_loads_the_document_processor() -> None:
    assert isinstance(load_processor("document"), DocumentProcessor)


@pytest.mark.parametrize("name", sorted(PHRASES))
def test_phrase_survives_into_content_and_a_chunk(processor: DocumentProcessor, name: str) -> None:
    result = run(processor, DOCS / name)
    phrase = PHRASES[name]
    assert phrase in result.content
    assert any(phrase in chunk.text for chunk in result.chunks)
    assert [c.index for c in result.chunks] == list(range(len(result.chunks)))


def test_docx_headings_keep_levels_tables_and_lists(processor: DocumentProcessor) -> None:
    result = run(processor, DOCS / "sample.docx")
    # The Title style is the one H1; Word's Heading 1/2/3 follow one level below it.
    assert headings(result.content) == [
        (1, "Field Station Report"),
        (2, "Overview"),
        (3, "Instruments"),
        (4, "Maintenance Steps"),
        (2, "Findings"),
    ]
    assert re.search(r"^\| Instrument +\| +Reading +\| Unit +\|$", result.content, re.M)
    assert re.search(r"^\| Barometer +\| +1013 \| hPa +\|$", result.content, re.M)
    assert "- Replace the desiccant" in result.content
    assert "2. Humidity stayed stable" in result.content
    meta = result.metadata
    assert (meta["format"], meta["title"], meta["author"]) == (
        "docx",
        "Field Station Report",
        "Ada Lovelace",
    )
    assert meta["created"].startswith("2024-05-17")
    paths = {tuple(c.heading_path) for c in result.chunks}
    assert ("Field Station Report", "Overview", "Instruments", "Maintenance Steps") in paths


def test_pptx_slides_are_pages(processor: DocumentProcessor) -> None:
    result = run(processor, DOCS / "sample.pptx")
    assert result.metadata["pages"] == 3
    assert result.metadata["title"] == "Platform Roadmap"
    by_page = {c.page: c for c in result.chunks}
    assert set(by_page) == {1, 2, 3}
    assert "spring freeze" in by_page[2].text and by_page[2].heading_path == ["Next Quarter"]
    assert "| Thermometer" in by_page[3].text


def test_xlsx_sheets_become_headed_tables(processor: DocumentProcessor) -> None:
    result = run(processor, DOCS / "sample.xlsx")
    assert headings(result.content) == [(1, "Stock"), (1, "Suppliers")]
    assert re.search(r"^\| Copper Wire +\| +120 \| +3.5 \|$", result.content, re.M)
    assert [c.page for c in result.chunks] == [1, 2]
    assert result.metadata["author"] == "Ada Lovelace"


def test_html_structure_and_head_metadata(processor: DocumentProcessor) -> None:
    result = run(processor, DOCS / "sample.html")
    assert headings(result.content) == [
        (1, "Ocean Energy Notes"),
        (2, "Sites"),
        (3, "Output by site"),
    ]
    assert "- Bay of Fundy" in result.content
    assert re.search(r"^\| Pentland Firth +\| +398 \|$", result.content, re.M)
    assert result.metadata["author"] == "Ada Lovelace"
    assert result.metadata["language"] == "en"


def test_markdown_passes_through_with_front_matter_as_metadata(
    processor: DocumentProcessor, tmp_path: Path
) -> None:
    body = (DOCS / "sample.md").read_text()
    path = tmp_path / "notes.md"
    path.write_text("---\ntitle: Survey 2024\nauthor: 'B. Grower'\n---\n" + body)
    result = run(processor, path)
    assert result.content == body
    assert (result.metadata["title"], result.metadata["author"]) == ("Survey 2024", "B. Grower")
    code = [c for c in result.chunks if "```text" in c.text]
    assert len(code) == 1 and "survey --rows 12 --tag\n```" in code[0].text


def test_plain_text_is_escaped_not_interpreted(
    processor: DocumentProcessor, tmp_path: Path
) -> None:
    path = tmp_path / "log.txt"
    path.write_bytes("Caf\xe9 notes\n\n# not a heading\n| nor a table |\n".encode("cp1252"))
    result = run(processor, path)
    assert result.metadata["title"] == "Café notes"
    assert headings(result.content) == []
    assert "\\# not a heading" in result.content
    assert all(c.heading_path == [] for c in result.chunks)


def test_eml_headers_body_and_attachments(processor: DocumentProcessor) -> None:
    result = run(processor, DOCS / "sample.eml")
    meta = result.metadata
    assert meta["title"] == "Harbour budget decision"
    assert meta["author"].startswith("Ada Lovelace")
    assert meta["attachments"] == ["budget.csv"]
    assert headings(result.content)[0] == (1, "Harbour budget decision")


def test_content_decides_over_a_wrong_name(processor: DocumentProcessor, tmp_path: Path) -> None:
    path = tmp_path / "upload.bin"
    shutil.copy(DOCS / "sample.docx", path)
    result = run(processor, path, name="report.pdf")
    assert result.metadata["format"] == "docx"
    assert PHRASES["sample.docx"] in result.content


def test_several_inputs_give_one_result(processor: DocumentProcessor) -> None:
    paths = [DOCS / "sample.txt", DOCS / "sample.md"]
    ctx = TaskContext(
        task_id="t2",
        task_type="document",
        parameters={},
        inputs=paths,
        input_names=[p.name for p in paths],
        work_dir=DOCS,
        device="cpu",
        models=ModelCache(),
        settings=ProcessorSettings(),
    )
    result = processor.process(ctx)
    assert [d["format"] for d in result.metadata["documents"]] == ["text", "markdown"]
    assert [c.index for c in result.chunks] == list(range(len(result.chunks)))
    assert len({c.chunk_id for c in result.chunks}) == len(result.chunks)
    assert PHRASES["sample.txt"] in result.content and PHRASES["sample.md"] in result.content


def test_chunk_ids_are_stable_across_runs(processor: DocumentProcessor) -> None:
    first = run(processor, DOCS / "sample.docx")
    second = run(processor, DOCS / "sample.docx")
    assert [c.chunk_id for c in first.chunks] == [c.chunk_id for c in second.chunks]


def test_no_input_is_bad_input(processor: DocumentProcessor) -> None:
    ctx = TaskContext(
        task_id="t3",
        task_type="document",
        parameters={},
        inputs=[],
        input_names=[],
        work_dir=DOCS,
        device="cpu",
        models=ModelCache(),
        settings=ProcessorSettings(),
    )
    with pytest.raises(BadInput, match="needs an input file"):
        processor.process(ctx)


@pytest.mark.parametrize("name", ["sample.docx", "sample.md", "sample.pptx", "text.pdf"])
def test_small_chunks_keep_tables_whole_and_respect_the_target(
    processor: DocumentProcessor, name: str
) -> None:
    settings = ProcessorSettings(chunk_tokens=12, chunk_overlap_tokens=3)
    result = run(processor, DOCS / name, settings=settings)
    tables = re.findall(r"(?:^\|.*\|$\n?)+", result.content, re.M)
    assert tables
    for table in tables:
        assert sum(table.strip() in chunk.text for chunk in result.chunks) == 1
    for chunk in result.chunks:
        body = [line for line in chunk.text.split("\n") if not line.startswith(("#", "|"))]
        if "```" not in chunk.text:
            assert len(" ".join(body).split()) <= 12, chunk.text


def test_form_feeds_in_plain_text_are_pages(processor: DocumentProcessor, tmp_path: Path) -> None:
    path = tmp_path / "printout.txt"
    path.write_text("Ledger\n\nfirst page entry\n\fsecond page entry\n\f\fthird page\n")
    result = run(
        processor, path, settings=ProcessorSettings(chunk_tokens=3, chunk_overlap_tokens=0)
    )
    assert result.metadata["pages"] == 4
    pages = {c.page for c in result.chunks if "second page entry" in c.text}
    assert pages == {2}
    assert "\f" not in result.content
