"""PDF → Markdown: text layers with structure, OCR for pages without one.

- pypdfium2 opens the file (a password or a broken file is refused here, in
  milliseconds), reads the metadata, tells whether a page has a text layer, and
  renders pages that have none for OCR (:func:`morag_worker.processors.ocr.recognize`,
  Tesseract by default).
- Pages with text: pypdfium2 gives the lines with their sizes and positions (and
  figures: images and drawn shapes), and pdfplumber the ruled tables of pages that
  draw vector paths (:mod:`doc_pdf_text`). :mod:`doc_pdf_layout` takes out running
  headers, footers and page numbers, keeps footnotes as Markdown footnotes, reads
  columns in order, and finds headings (lines set larger than the body text);
  tables become pipe tables at their place on the page. Without pdfplumber, or when
  it fails on a page, that page's table text stays as plain lines.
- With ``--docling-artifacts-path`` set, docling's PDF pipeline (local layout and
  table models, :mod:`doc_pdf_docling`) converts the pages that have text instead.

Every page starts with a ``<!-- page: N -->`` marker, so chunks know their page.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from morag_worker.errors import BadInput, Cancelled, ModelMissing
from morag_worker.processors.base import TaskContext
from morag_worker.processors.chunking import page_marker
from morag_worker.processors.doc_pdf_docling import docling_pdf_pages
from morag_worker.processors.doc_pdf_items import PageItems, Table
from morag_worker.processors.doc_pdf_layout import render_document
from morag_worker.processors.doc_pdf_text import (
    drawn_objects,
    outside_tables,
    pdfium_lines,
    ruled_tables,
)

#: PDF information-dictionary keys → metadata keys.
_INFO_KEYS = {
    "Title": "title",
    "Author": "author",
    "Subject": "subject",
    "Keywords": "keywords",
    "CreationDate": "created",
    "ModDate": "modified",
    "Producer": "producer",
}
#: pdfium error codes (FPDF_ERR_*) that mean the file, not the worker, is at fault.
_PDFIUM_ERRORS = {
    2: "the file cannot be opened as a PDF",
    3: "it is not a valid PDF or is corrupt",
    4: "it is password-protected; remove the password and upload it again",
    5: "its security scheme is not supported; remove the protection and upload it again",
}


def _open(path: Path) -> Any:
    import pypdfium2 as pdfium

    try:
        return pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as exc:
        reason = _PDFIUM_ERRORS.get(getattr(exc, "err_code", None) or 0)
        if reason is None:
            raise BadInput(f"cannot read this PDF ({exc})") from None
        raise BadInput(f"cannot read this PDF: {reason}") from None


def _metadata(pdf: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"pages": len(pdf)}
    for key, value in pdf.get_metadata_dict(skip_empty=True).items():
        if key in _INFO_KEYS and value.strip():
            meta[_INFO_KEYS[key]] = _pdf_date(value) if key.endswith("Date") else value.strip()
    return meta


def _pdf_date(value: str) -> str:
    """``D:20240517093000Z`` → ``2024-05-17T09:30:00Z`` (other forms pass through)."""
    digits = value.removeprefix("D:")
    if len(digits) >= 14 and digits[:14].isdigit():
        d = digits
        zone = "Z" if d[14:15] in ("Z", "") else d[14:].replace("'", "")
        return f"{d[0:4]}-{d[4:6]}-{d[6:8]}T{d[8:10]}:{d[10:12]}:{d[12:14]}{zone}"
    return value


@contextmanager
def _plumber(path: Path) -> Iterator[Any]:
    """pdfplumber's view of the file, or ``None`` when it is missing or cannot parse it."""
    try:
        import pdfplumber
    except ImportError:
        yield None
        return
    try:
        pdf = pdfplumber.open(str(path))
    except Exception:  # pdfminer is stricter than pdfium; fall back to plain text
        yield None
        return
    with pdf:
        yield pdf


def _text_page(pdfium_page: Any, plumber: Any, number: int) -> PageItems:
    """Lines from pdfium; ruled tables from pdfplumber where the page draws paths."""
    lines = pdfium_lines(pdfium_page)
    paths, figures = drawn_objects(pdfium_page, lines)
    tables: list[Table] = []
    if plumber is not None and paths:
        try:
            tables = ruled_tables(plumber.pages[number - 1])
        except Exception:  # pdfminer cannot lay this page out; its text stays as lines
            tables = []
    figures = [f for f in figures if not any(_overlap(f.bbox, t.bbox) for t in tables)]
    return PageItems(number, outside_tables(lines, tables), tables, figures=figures)


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _ocr(pdfium_page: Any, number: int, ctx: TaskContext) -> PageItems:
    try:
        from morag_worker.processors.ocr import recognize
    except ImportError as exc:
        raise ModelMissing(
            f"page {number} has no text layer and OCR is not installed ({exc}); "
            "install morag-worker[ocr] and the Debian packages tesseract-ocr tesseract-ocr-eng"
        ) from None
    image = pdfium_page.render(scale=ctx.settings.pdf_ocr_dpi / 72, grayscale=True).to_pil()
    result = recognize(image, ctx.settings, ctx.models)
    return PageItems(number, [], [], result.paragraphs, result.confidence)


def _page_items(
    pdf: Any, plumber: Any, index: int, ctx: TaskContext, docling: dict[int, str] | None
) -> PageItems:
    page = pdf[index]
    try:
        if page.get_textpage().count_chars() == 0:
            return _ocr(page, index + 1, ctx)
        if docling is not None:
            return PageItems(index + 1, [], [], markdown=docling.get(index + 1, ""))
        return _text_page(page, plumber, index + 1)
    finally:
        page.close()


def convert_pdf(path: Path, ctx: TaskContext) -> tuple[str, dict[str, Any]]:
    """Markdown with page markers and metadata (title, author, dates, pages, OCR pages).

    Raises :class:`BadInput` for an encrypted or corrupt PDF and
    :class:`~morag_worker.errors.Cancelled` when the task is cancelled between pages.
    """
    pdf = _open(path)
    artifacts = ctx.settings.docling_artifacts_path
    try:
        meta = _metadata(pdf)
        docling = docling_pdf_pages(path, artifacts, ctx.device, ctx.models) if artifacts else None
        pages: list[PageItems] = []
        with _plumber(path) as plumber:
            for index in range(len(pdf)):
                if ctx.cancelled():
                    raise Cancelled()
                pages.append(_page_items(pdf, plumber, index, ctx, docling))
                ctx.report((index + 1) / max(len(pdf), 1), "pdf")
    finally:
        pdf.close()
    ocr_pages = [p.number for p in pages if p.ocr_paragraphs is not None]
    converter = "docling-pdf" if artifacts else "pypdfium2+pdfplumber"
    meta["converter"] = converter + ("+ocr" if ocr_pages else "")
    if ocr_pages:
        meta["ocr_pages"] = ocr_pages
        scores = [p.ocr_confidence or 0.0 for p in pages if p.ocr_paragraphs is not None]
        meta["ocr_confidence"] = round(sum(scores) / len(scores), 4)
    rendered = render_document(pages)
    if rendered.furniture:
        meta["page_furniture"] = rendered.furniture
    markdown = "\n\n".join(f"{page_marker(p.number)}\n\n{b}".rstrip() for p, b in rendered.pages)
    return markdown + "\n", meta
