"""The ``document`` task: DOCX, PPTX, XLSX, HTML, Markdown, plain text, EML and PDF.

Each input is detected from its content (:mod:`doc_detect`), converted to Markdown by
the backend for its format, and chunked with :func:`chunk_markdown`:

======== ============================================================================
format   backend (why: ``docs/documents.md``)
======== ============================================================================
text     built in (:mod:`doc_text`)
markdown built in: passed through, front matter → metadata
docx     docling (:mod:`doc_office`); properties from ``docProps/*.xml``
pptx     docling, one ``<!-- page: N -->`` per slide
xlsx     docling, one page per sheet with the sheet name as heading
html     docling
eml      docling; headers and attachment names from the standard library
pdf      pypdfium2 + pdfplumber (:mod:`doc_pdf`); pages without text → Tesseract
======== ============================================================================

Limits (:mod:`doc_limits` before converting, :mod:`doc_budget` during): XML size,
elements, pages, conversion time and memory per document, each a non-retryable
``BadInput`` naming its flag.

Several inputs in one task give one result: their Markdown joined under a heading
per file, chunks numbered across all of them, metadata per file under ``documents``.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from morag_worker.errors import BadInput, Cancelled
from morag_worker.processors.base import TaskContext
from morag_worker.processors.chunking import chunk_id, chunk_markdown
from morag_worker.processors.doc_budget import Budget
from morag_worker.processors.doc_detect import check_zip, detect_format
from morag_worker.processors.doc_limits import check_html, check_office, check_pdf
from morag_worker.processors.doc_office import (
    DOCLING_FORMATS,
    DoclingConverter,
    eml_metadata,
    html_metadata,
    ooxml_metadata,
)
from morag_worker.processors.doc_text import decode_text, markdown_document, text_document
from morag_worker.protocol import Chunk, TaskResult


class DocumentProcessor:
    task_type = "document"

    def __init__(self) -> None:
        self._docling = DoclingConverter()

    def process(self, ctx: TaskContext) -> TaskResult:
        """Convert every input; raises :class:`BadInput` for a file it cannot read."""
        if not ctx.inputs:
            raise BadInput("a document task needs an input file; upload one with the task")
        results = []
        for i, path in enumerate(ctx.inputs):
            if ctx.cancelled():
                raise Cancelled()
            name = ctx.input_names[i] if i < len(ctx.input_names) else path.name
            results.append(self.convert_file(ctx, path, name))
            ctx.report((i + 1) / len(ctx.inputs), "convert")
        if len(results) == 1:
            return results[0]
        return _merge(results, ctx.input_names or [p.name for p in ctx.inputs])

    def convert_file(self, ctx: TaskContext, path: Path, name: str) -> TaskResult:
        """Markdown, metadata and chunks for one file called ``name``."""
        started = time.perf_counter()
        settings = ctx.settings
        zip_limits = (settings.doc_max_unzipped_bytes, settings.doc_max_zip_entries)
        try:
            fmt = detect_format(path, name, zip_limits=zip_limits)
            markdown, meta = self._within_budget(ctx, path, fmt, zip_limits)
        except BadInput as exc:  # name the file: a task may carry several
            raise BadInput(f"{name}: {exc.message}") from None
        meta = {
            "format": fmt,
            "source": name,
            "bytes": path.stat().st_size,
            "title": meta.pop("title", None) or Path(name).stem or None,
            "author": meta.pop("author", None),
            "pages": meta.pop("pages", None),
            **meta,
        }
        chunks = chunk_markdown(
            markdown,
            target_tokens=settings.chunk_tokens,
            overlap_tokens=settings.chunk_overlap_tokens,
            source=name,
        )
        meta["words"] = len(markdown.split())
        meta["convert_seconds"] = round(time.perf_counter() - started, 4)
        return TaskResult(content=markdown, metadata=meta, chunks=chunks)

    def _within_budget(
        self, ctx: TaskContext, path: Path, fmt: str, zip_limits: tuple[int, int]
    ) -> tuple[str, dict[str, Any]]:
        """:meth:`_to_markdown` inside the document's time and memory budget.

        The PDF converter polls ``ctx.cancelled`` between pages; docling's backends do not
        and are interrupted (:mod:`doc_budget`), after which the converter is rebuilt.
        """
        if fmt in DOCLING_FORMATS:
            self._docling.prepare()  # its imports are the child's cost, not the document's
        budget = Budget(ctx.settings, interrupt=fmt in DOCLING_FORMATS)
        try:
            with budget:
                inner = replace(ctx, cancelled=budget.cancelled(ctx.cancelled))
                return self._to_markdown(inner, path, fmt, zip_limits)
        except BadInput:
            if budget.reason and fmt in DOCLING_FORMATS:
                self._docling = DoclingConverter()  # interrupted mid-way: start afresh
            raise

    def _to_markdown(
        self, ctx: TaskContext, path: Path, fmt: str, zip_limits: tuple[int, int]
    ) -> tuple[str, dict[str, Any]]:
        if fmt == "text":
            return text_document(decode_text(path.read_bytes()))
        if fmt == "markdown":
            return markdown_document(decode_text(path.read_bytes()))
        if fmt == "pdf":
            from morag_worker.processors.doc_pdf import convert_pdf

            check_pdf(path, ctx.settings)
            return convert_pdf(path, ctx)
        meta: dict[str, Any] = {"converter": "docling"}
        if fmt in ("docx", "pptx", "xlsx"):
            with check_zip(path, max_unzipped_bytes=zip_limits[0], max_entries=zip_limits[1]) as z:
                check_office(z, fmt, ctx.settings)
                meta.update(ooxml_metadata(z))
        elif fmt == "eml":
            meta.update(eml_metadata(path))
        elif fmt == "html":
            text = decode_text(path.read_bytes())
            check_html(text, ctx.settings)
            meta.update(html_metadata(text))
        markdown, pages = self._docling.convert(path.read_bytes(), fmt)
        if pages:
            meta["pages"] = pages
        if fmt == "html" and "title" not in meta:
            meta["title"] = _first_heading(markdown)
        return markdown, meta


def _first_heading(markdown: str) -> str | None:
    for line in markdown.splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip() or None
    return None


def _merge(results: list[TaskResult], names: list[str]) -> TaskResult:
    """One result for several files: a heading per file, chunk indexes continued."""
    parts: list[str] = []
    chunks: list[Chunk] = []
    for name, result in zip(names, results, strict=False):
        parts.append(f"# {name}\n\n{result.content.strip()}\n")
        for chunk in result.chunks:
            index = len(chunks)
            new_id = chunk_id(name, index, chunk.text)
            chunks.append(chunk.model_copy(update={"index": index, "chunk_id": new_id}))
    metadata = {"format": "multiple", "documents": [r.metadata for r in results]}
    return TaskResult(content="\n".join(parts), metadata=metadata, chunks=chunks)
