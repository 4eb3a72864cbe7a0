"""OCR behind one interface: Tesseract (default), RapidOCR and PaddleOCR.

Stable entry points, also used by the document processor for scanned PDF pages:

- ``ocr_image(image, settings, models=None) -> (text, confidence)``
- ``recognize(image, settings, models=None) -> OcrResult`` with lines and paragraphs.

``image`` is a decoded ``PIL.Image.Image`` (any mode; callers check its size first).
``text`` is the page in reading order: lines joined by spaces within a paragraph,
paragraphs separated by a blank line. ``confidence`` is in 0..1, the mean of the
engine's per-word (Tesseract) or per-line (RapidOCR, PaddleOCR) scores weighted by
characters; 0.0 when nothing was read. A missing engine or language is
:class:`~morag_worker.errors.ModelMissing` naming what to install.

Tesseract runs as a subprocess with ``OMP_THREAD_LIMIT=1``: its OpenMP threads made
it slower, not faster, on shared cores, and the supervisor already runs one task per
core. The box-based engines return text lines as boxes; :mod:`ocr_layout` groups
them into reading order.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from PIL import Image

from morag_worker.errors import ConfigError, ModelMissing, TaskFailure
from morag_worker.models.cache import ModelCache
from morag_worker.processors.ocr_layout import OcrLine, group_boxes, join_paragraphs
from morag_worker.processors.settings import ProcessorSettings

BACKENDS = ("tesseract", "rapidocr", "paddleocr")


@dataclass(frozen=True)
class OcrResult:
    text: str
    confidence: float
    paragraphs: list[str]
    lines: list[OcrLine]
    backend: str
    seconds: float


def ocr_image(
    image: Image.Image, settings: ProcessorSettings, models: ModelCache | None = None
) -> tuple[str, float]:
    """OCR one page; return its text in reading order and the confidence (0..1)."""
    result = recognize(image, settings, models)
    return result.text, result.confidence


def recognize(
    image: Image.Image, settings: ProcessorSettings, models: ModelCache | None = None
) -> OcrResult:
    """OCR one page with ``settings.ocr_backend``; see the module docstring.

    ``models`` caches the RapidOCR/PaddleOCR engines across tasks in a child; without
    it an engine is built for this call alone.
    """
    backend = settings.ocr_backend.strip().lower()
    started = time.monotonic()
    if backend == "tesseract":
        lines, paragraphs = _tesseract(image, settings.ocr_languages)
    elif backend in ("rapidocr", "paddleocr"):
        from morag_worker.processors import ocr_engines

        boxes = ocr_engines.run(backend, image, settings, models)
        lines, paragraphs = group_boxes(boxes)
    else:
        raise ConfigError(f"--ocr-backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    weight = sum(len(line.text) for line in lines)
    confidence = sum(line.confidence * len(line.text) for line in lines) / weight if weight else 0.0
    return OcrResult(
        text=join_paragraphs(paragraphs),
        confidence=round(confidence, 4),
        paragraphs=paragraphs,
        lines=lines,
        backend=backend,
        seconds=round(time.monotonic() - started, 3),
    )


def _tesseract_binary() -> str:
    binary = shutil.which("tesseract")
    if binary is None:
        raise ModelMissing(
            "the tesseract program is not installed; install the Debian packages "
            "tesseract-ocr tesseract-ocr-eng (or choose --ocr-backend rapidocr)"
        )
    return binary


def _tesseract(image: Image.Image, languages: str) -> tuple[list[OcrLine], list[str]]:
    """Run Tesseract's TSV output on ``image``; group its words into lines and paragraphs."""
    png = io.BytesIO()
    _for_ocr(image).save(png, format="PNG")
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    command = [_tesseract_binary(), "stdin", "stdout", "-l", languages or "eng", "tsv"]
    proc = subprocess.run(command, input=png.getvalue(), capture_output=True, env=env)
    if proc.returncode != 0:
        message = proc.stderr.decode(errors="replace").strip()
        if "Failed loading language" in message or "Error opening data file" in message:
            missing = " ".join(f"tesseract-ocr-{code}" for code in languages.split("+"))
            raise ModelMissing(
                f"Tesseract cannot load language(s) {languages!r}; install {missing}"
            )
        raise TaskFailure("ocr", f"tesseract failed: {message[-500:]}", retryable=False)
    return _parse_tsv(proc.stdout.decode("utf-8", errors="replace"))


def _for_ocr(image: Image.Image) -> Image.Image:
    """8-bit greyscale on white.

    Transparency is flattened onto white (transparent text would otherwise turn black
    on black); 16-bit and float images are stretched to 0..255, because Pillow's own
    conversion clips them and a 16-bit scan would come out blank.
    """
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        background.alpha_composite(image.convert("RGBA"))
        image = background
    elif image.mode in ("I", "F") or image.mode.startswith("I;"):
        image = image.convert("F")
        extrema: Any = image.getextrema()  # one band: (low, high)
        low, high = float(extrema[0]), float(extrema[1])
        scale = 255.0 / (high - low) if high > low else 1.0
        image = image.point(lambda v: v * scale - low * scale)
    return image if image.mode == "L" else image.convert("L")


def _parse_tsv(tsv: str) -> tuple[list[OcrLine], list[str]]:
    """Words (level 5) grouped by (block, paragraph, line), kept in Tesseract's order."""
    words: dict[tuple[int, int, int], list[tuple[str, float]]] = defaultdict(list)
    boxes: dict[tuple[int, int, int], tuple[int, int, int, int]] = {}
    for row in csv.DictReader(io.StringIO(tsv), delimiter="\t", quoting=csv.QUOTE_NONE):
        text = (row.get("text") or "").strip()
        if row.get("level") != "5" or not text:
            continue
        key = (int(row["block_num"]), int(row["par_num"]), int(row["line_num"]))
        words[key].append((text, max(float(row["conf"]), 0.0) / 100.0))
        left, top = int(row["left"]), int(row["top"])
        right, bottom = left + int(row["width"]), top + int(row["height"])
        old = boxes.get(key, (left, top, right, bottom))
        boxes[key] = (min(old[0], left), min(old[1], top), max(old[2], right), max(old[3], bottom))
    lines: list[OcrLine] = []
    paragraphs: dict[tuple[int, int], list[str]] = {}
    for key, items in words.items():
        text = " ".join(word for word, _ in items)
        chars = sum(len(word) for word, _ in items)
        conf = sum(c * len(word) for word, c in items) / chars
        lines.append(OcrLine(text, round(conf, 4), boxes[key]))
        paragraphs.setdefault(key[:2], []).append(text)
    return lines, [" ".join(parts) for parts in paragraphs.values()]
