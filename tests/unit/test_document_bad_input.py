"""Bad documents are refused with a clear BadInput, fast, and the processor keeps serving."""

from __future__ import annotations

import http.server
import io
import os
import shutil
import threading
import zipfile
from pathlib import Path

import pytest

from morag_worker.errors import BadInput
from morag_worker.processors.base import TaskContext
from morag_worker.processors.doc_detect import detect_format
from morag_worker.processors.document import DocumentProcessor
from morag_worker.processors.settings import ProcessorSettings
from morag_worker.protocol import TaskResult

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")

DOCS = Path(__file__).parents[1] / "fixtures" / "documents"
LIMITS = (ProcessorSettings().doc_max_unzipped_bytes, ProcessorSettings().doc_max_zip_entries)


@pytest.fixture(scope="module")
def processor() -> DocumentProcessor:
    return DocumentProcessor()


def run(
    processor: DocumentProcessor, path: Path, settings: ProcessorSettings | None = None
) -> TaskResult:
    return processor.process(TaskContext.local("document", [path], settings=settings))


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("bomb.docx", r"bomb.docx: refused a zip-bomb-like archive: it inflates 1,0\d\d×"),
        ("corrupt.docx", r"corrupt.docx: the zip container is corrupt or truncated"),
        ("encrypted.pdf", r"encrypted.pdf: cannot read this PDF: it is password-protected"),
        ("corrupt.pdf", r"corrupt.pdf: cannot read this PDF: it is not a valid PDF or is corrupt"),
        ("unsupported.bin", r"unsupported.bin: unsupported file type: binary content"),
    ],
)
def test_bad_fixtures_are_bad_input(processor: DocumentProcessor, name: str, message: str) -> None:
    with pytest.raises(BadInput, match=message) as caught:
        run(processor, DOCS / name)
    assert caught.value.retryable is False
    # the same processor still converts a good file afterwards
    assert "lighthouse keeper" in run(processor, DOCS / "sample.txt").content


def test_zip_limits_come_from_settings(processor: DocumentProcessor) -> None:
    few_entries = ProcessorSettings(doc_max_zip_entries=5)
    with pytest.raises(BadInput, match=r"it has \d+ entries \(limit 5, --doc-max-zip-entries\)"):
        run(processor, DOCS / "sample.docx", few_entries)
    small = ProcessorSettings(doc_max_unzipped_bytes=10_000)
    with pytest.raises(
        BadInput, match=r"inflates to [\d,]+ bytes \(limit 10,000, --doc-max-unzipped-bytes\)"
    ):
        run(processor, DOCS / "sample.pptx", small)


def test_broken_xml_inside_a_valid_zip(processor: DocumentProcessor, tmp_path: Path) -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(DOCS / "sample.docx") as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            broken = info.filename == "word/document.xml"
            dst.writestr(info, b"<w:document><w:body" if broken else src.read(info))
    path = tmp_path / "broken.docx"
    path.write_bytes(out.getvalue())
    with pytest.raises(BadInput, match=r"broken.docx: cannot read this DOCX"):
        run(processor, path)


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (b"", "empty.txt", "is empty"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(500), "old.doc", "legacy"),
        (b"just some words, not a document", "report.docx", "named like a DOCX but is not one"),
    ],
)
def test_unreadable_uploads(
    processor: DocumentProcessor, tmp_path: Path, content: bytes, name: str, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(BadInput, match=message):
        run(processor, path)


def test_a_zip_that_is_not_office_is_unsupported(tmp_path: Path) -> None:
    path = tmp_path / "photos.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a.txt", "hello")
    with pytest.raises(BadInput, match="not DOCX, PPTX or XLSX"):
        detect_format(path, path.name, zip_limits=LIMITS)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("sample.eml", "eml"),
        ("sample.html", "html"),
        ("sample.md", "markdown"),
        ("sample.txt", "text"),
        ("sample.xlsx", "xlsx"),
        ("sample.pptx", "pptx"),
        ("text.pdf", "pdf"),
    ],
)
def test_detection_without_a_helpful_name(tmp_path: Path, source: str, expected: str) -> None:
    path = tmp_path / "upload"
    shutil.copy(DOCS / source, path)
    assert detect_format(path, "upload", zip_limits=LIMITS) == expected


def test_html_references_are_never_fetched(processor: DocumentProcessor, tmp_path: Path) -> None:
    # A document must not make the worker reach out (SSRF): images, styles and frames
    # in an uploaded page stay references.
    hits: list[str] = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    path = tmp_path / "page.html"
    path.write_text(
        f'<html><head><link rel="stylesheet" href="{base}/s.css"><script src="{base}/a.js">'
        f'</script></head><body><h1>Refs</h1><img src="{base}/i.png" alt="chart">'
        f'<iframe src="{base}/f.html"></iframe><p>body text stays</p></body></html>'
    )
    try:
        result = run(processor, path)
    finally:
        server.shutdown()
        server.server_close()
    assert "body text stays" in result.content
    assert hits == []
