"""The ``image`` task: OCR text in reading order, EXIF metadata, an optional description.

Input: exactly one image file (PNG, JPEG, TIFF incl. multi-page, BMP, GIF, WebP, PPM,
JPEG 2000). Output Markdown::

    # <file name>
    <OCR paragraphs, blank-line separated>   (## Page N sections for multi-page files)
    ## Description
    <the describer's text>                   (only when a describer is configured)

Metadata: ``width``, ``height``, ``format``, ``mode``, ``frames``, ``exif`` (tags by
name), ``ocr`` (backend, languages, confidence 0..1, line/paragraph counts, seconds,
per-page confidences) and ``description`` with ``status`` ``ok``, ``failed`` (with
the error; OCR text is still returned) or ``not_configured``.

Bad input (unsupported format; any frame over ``max_image_pixels``, more than
``max_image_frames`` frames or ``max_image_total_pixels`` in all — checked from headers
before decoding —; corrupt or truncated data) is ``BadInput``.
"""

from __future__ import annotations

import time
from typing import Any

from PIL import Image

from morag_worker.errors import BadInput, Cancelled, TaskFailure
from morag_worker.processors.base import TaskContext
from morag_worker.processors.chunking import chunk_markdown
from morag_worker.processors.describe import make_describer
from morag_worker.processors.image_io import frame_count, load_frames, open_image, read_exif
from morag_worker.processors.ocr import OcrResult, recognize
from morag_worker.protocol import TaskResult


class ImageProcessor:
    task_type = "image"

    def process(self, ctx: TaskContext) -> TaskResult:
        if len(ctx.inputs) != 1:
            raise BadInput(f"an image task takes exactly one image file, got {len(ctx.inputs)}")
        name = ctx.input_names[0] if ctx.input_names else ctx.inputs[0].name
        started = time.monotonic()
        with open_image(ctx.inputs[0], name, ctx.settings) as image:
            metadata = _image_metadata(image)
            pages, first = self._ocr_frames(ctx, image, name, frame_count(image))
        metadata["ocr"] = _ocr_metadata(pages, ctx)
        description = _describe(ctx, first)
        metadata["description"] = description
        content = _markdown(name, pages, description.get("text", ""))
        ctx.report(0.95, "chunking")
        chunks = chunk_markdown(
            content,
            target_tokens=ctx.settings.chunk_tokens,
            overlap_tokens=ctx.settings.chunk_overlap_tokens,
            source=name,
        )
        metadata["seconds"] = round(time.monotonic() - started, 3)
        return TaskResult(content=content, metadata=metadata, chunks=chunks)

    def _ocr_frames(
        self, ctx: TaskContext, image: Image.Image, name: str, frames: int
    ) -> tuple[list[OcrResult], Image.Image]:
        """OCR every frame; return the results and the first frame (for the describer)."""
        pages: list[OcrResult] = []
        first: Image.Image | None = None
        for index, frame in enumerate(load_frames(image, name)):
            if ctx.cancelled():
                raise Cancelled()
            ctx.report(0.9 * index / frames, f"ocr page {index + 1}/{frames}")
            if first is None:
                first = frame
            pages.append(recognize(frame, ctx.settings, ctx.models))
        if first is None:
            raise BadInput(f"{name}: the image has no frames")
        return pages, first


def _image_metadata(image: Image.Image) -> dict[str, Any]:
    return {
        "width": image.width,
        "height": image.height,
        "format": image.format,
        "mode": image.mode,
        "frames": frame_count(image),
        "exif": read_exif(image),
    }


def _ocr_metadata(pages: list[OcrResult], ctx: TaskContext) -> dict[str, Any]:
    chars = sum(len(page.text) for page in pages)
    confidence = sum(page.confidence * len(page.text) for page in pages) / chars if chars else 0.0
    return {
        "backend": pages[0].backend,
        "languages": ctx.settings.ocr_languages,
        "confidence": round(confidence, 4),
        "page_confidences": [page.confidence for page in pages],
        "lines": sum(len(page.lines) for page in pages),
        "paragraphs": sum(len(page.paragraphs) for page in pages),
        "characters": chars,
        "seconds": round(sum(page.seconds for page in pages), 3),
    }


def _describe(ctx: TaskContext, image: Image.Image) -> dict[str, Any]:
    """Run the configured describer; a describer failure does not fail the OCR result."""
    describer = make_describer(ctx.settings, ctx.models, ctx.device)
    if describer is None:
        return {
            "status": "not_configured",
            "detail": "no describer configured (--describe-endpoint or --describe-model-path)",
        }
    ctx.report(0.9, "describe")
    try:
        text = describer.describe(image)
    except TaskFailure as exc:
        # OCR text is the main product; an unreachable describer should not throw it
        # away, so the failure is reported in metadata instead.
        return {"status": "failed", "describer": describer.name, "error": exc.message}
    return {"status": "ok", "describer": describer.name, "text": text}


def _markdown(name: str, pages: list[OcrResult], description: str) -> str:
    parts = [f"# {name}"]
    if len(pages) == 1:
        parts.append(pages[0].text)
    else:
        for number, page in enumerate(pages, start=1):
            parts.extend([f"## Page {number}", page.text])
    if description:
        parts.extend(["## Description", description])
    return "\n\n".join(part for part in parts if part) + "\n"
