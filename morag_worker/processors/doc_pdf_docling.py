"""docling's PDF pipeline (layout and table-structure models), when installed locally.

It recovers structure a text layer does not carry (reading order of columns,
borderless tables, headings set in body size) but needs model weights and torch, so
it is opt-in: ``--docling-artifacts-path`` names a directory that holds the models
(``docling-tools models download`` on a connected machine, then copied). Nothing is
downloaded at run time: an unset path keeps the pypdfium2 + pdfplumber path, and a
path without the models or without docling's PDF extras is a clear
:class:`~morag_worker.errors.ModelMissing`.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from morag_worker.errors import BadInput, ModelMissing
from morag_worker.models.cache import ModelCache, ModelKey

INSTALL_HINT = (
    "pip install 'docling-slim[format-pdf,models-local]' with a CPU or CUDA torch, and put "
    "the models there with `docling-tools models download -o DIR`"
)
#: A rough resident size for the layout + TableFormer models, for the cache budget.
MODEL_BYTES = 600 * 1024 * 1024


def _build(artifacts: Path) -> Any:
    if not artifacts.is_dir():
        raise ModelMissing(
            f"--docling-artifacts-path {artifacts} is not a directory; {INSTALL_HINT}"
        )
    try:
        import docling_ibm_models  # noqa: F401  (the models' code; absent without the extra)
        import docling_parse  # noqa: F401  (docling's PDF backend)
        from docling.datamodel.base_models import InputFormat
        from docling.datamodel.pipeline_options import PdfPipelineOptions
        from docling.document_converter import DocumentConverter, PdfFormatOption
    except ImportError as exc:
        raise ModelMissing(
            f"docling's PDF pipeline is not installed ({exc}); {INSTALL_HINT}"
        ) from None
    # OCR stays ours (pages without text go to the configured OCR engine), so docling's
    # OCR models are not needed.
    options = PdfPipelineOptions(artifacts_path=str(artifacts), do_ocr=False)
    return DocumentConverter(
        allowed_formats=[InputFormat.PDF],
        format_options={InputFormat.PDF: PdfFormatOption(pipeline_options=options)},
    )


def docling_pdf_pages(
    path: Path, artifacts: str, device: str, models: ModelCache
) -> dict[int, str]:
    """Markdown of each page (1-based) of the PDF at ``path`` through docling's pipeline.

    The converter (with its models) is cached in the child's model cache. Raises
    :class:`ModelMissing` as described above and :class:`BadInput` when docling
    cannot convert the file.
    """
    from docling.datamodel.base_models import DocumentStream

    key = ModelKey("docling-pdf", artifacts, device)
    converter = models.get(key, lambda: _build(Path(artifacts)), MODEL_BYTES)
    stream = DocumentStream(name="input.pdf", stream=io.BytesIO(path.read_bytes()))
    try:
        document = converter.convert(stream, raises_on_error=True).document
    except MemoryError:
        raise
    except Exception as exc:  # docling wraps parser and model errors in many types
        raise BadInput(f"docling cannot convert this PDF: {exc}") from None
    return {
        page: document.export_to_markdown(
            page_no=page, escape_html=False, escape_underscores=False
        ).strip()
        for page in sorted(document.pages)
    }
