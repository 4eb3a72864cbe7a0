"""The optional box-based OCR engines: RapidOCR and PaddleOCR.

Both return text lines as boxes; :mod:`ocr_layout` puts them in reading order.
Engines are built once per child through the :class:`ModelCache` when one is given.

- RapidOCR (``rapidocr-onnxruntime``): PaddleOCR's PP-OCR models converted to ONNX,
  shipped inside the wheel, so it works offline. One intra-op thread, like every CPU
  engine here. Strong for Chinese; it drops spaces in small Latin print.
- PaddleOCR (``paddleocr`` 3.x with ``paddlepaddle``): cannot fetch its models
  offline, so it runs only with ``--paddleocr-model-dir`` holding ``det/`` and
  ``rec/`` model directories exported by PaddleOCR.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from morag_worker.errors import ModelMissing
from morag_worker.models.cache import ModelKey
from morag_worker.processors.ocr_layout import TextBox
from morag_worker.processors.settings import ProcessorSettings

#: Rough resident size of each engine for the cache's byte budget.
_ENGINE_BYTES = {"rapidocr": 60 * 1024**2, "paddleocr": 400 * 1024**2}


def run(
    backend: str, image: Image.Image, settings: ProcessorSettings, models: Any
) -> list[TextBox]:
    """Text boxes of ``image`` from ``backend`` (``rapidocr`` or ``paddleocr``)."""
    key = ModelKey("ocr", f"{backend}:{_model_dir(backend, settings)}")
    loader = {"rapidocr": _load_rapidocr, "paddleocr": lambda: _load_paddle(settings)}[backend]
    engine = models.get(key, loader, _ENGINE_BYTES[backend]) if models else loader()
    pixels = np.asarray(image.convert("RGB"))
    if backend == "rapidocr":
        return _rapidocr_boxes(engine, pixels)
    return _paddle_boxes(engine, pixels)


def _model_dir(backend: str, settings: ProcessorSettings) -> str:
    return settings.paddleocr_model_dir if backend == "paddleocr" else "bundled"


def _points(points: Any) -> tuple[tuple[float, float], ...]:
    return tuple((float(p[0]), float(p[1])) for p in points)


def _load_rapidocr() -> Any:
    try:
        from rapidocr_onnxruntime import RapidOCR
    except ImportError:
        raise ModelMissing(
            "--ocr-backend rapidocr needs the rapidocr-onnxruntime package "
            "(pip install 'morag-worker[ocr]')"
        ) from None
    # No text-line angle classifier: on upright print it flipped whole lines by 180°
    # and lost them (a full line of the clean fixture); EXIF orientation is applied
    # before OCR, and Tesseract remains the engine for pages of unknown rotation.
    return RapidOCR(intra_op_num_threads=1, inter_op_num_threads=1, use_cls=False)


def _rapidocr_boxes(engine: Any, pixels: np.ndarray) -> list[TextBox]:
    result, _elapsed = engine(pixels)
    return [
        TextBox(str(text), round(float(score), 4), _points(points))
        for points, text, score in result or []
    ]


def _load_paddle(settings: ProcessorSettings) -> Any:
    root = Path(settings.paddleocr_model_dir) if settings.paddleocr_model_dir else None
    if root is None or not (root / "det").is_dir() or not (root / "rec").is_dir():
        raise ModelMissing(
            "--ocr-backend paddleocr needs --paddleocr-model-dir with det/ and rec/ "
            "model directories exported by PaddleOCR (it cannot download them offline)"
        )
    try:
        from paddleocr import PaddleOCR
    except ImportError:
        raise ModelMissing(
            "--ocr-backend paddleocr needs the paddleocr and paddlepaddle packages"
        ) from None
    return PaddleOCR(
        text_detection_model_dir=str(root / "det"),
        text_recognition_model_dir=str(root / "rec"),
        use_doc_orientation_classify=False,
        use_doc_unwarping=False,
        use_textline_orientation=False,
    )


def _paddle_boxes(engine: Any, pixels: np.ndarray) -> list[TextBox]:
    boxes: list[TextBox] = []
    for page in engine.predict(pixels):
        for text, score, points in zip(
            page["rec_texts"], page["rec_scores"], page["rec_polys"], strict=False
        ):
            boxes.append(TextBox(str(text), round(float(score), 4), _points(points)))
    return boxes
