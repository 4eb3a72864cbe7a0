"""Reading order for OCR engines that return loose text boxes (RapidOCR, PaddleOCR).

After undoing the page's skew (the median angle of the boxes' top edges), boxes
whose vertical extents overlap by more than half the smaller height form one
line, read left to right; lines are read top to bottom; a vertical gap larger than
``PARAGRAPH_GAP`` line heights starts a new paragraph. This is right for single-
column pages, slides and photos of signs; multi-column pages come out row by row
(Tesseract's own layout analysis handles columns and is the default).
"""

from __future__ import annotations

import itertools
import math
import statistics
from dataclasses import dataclass

BBox = tuple[int, int, int, int]  # left, top, right, bottom in pixels

#: A gap between lines of more than this many median line heights ends a paragraph:
#: ordinary line spacing leaves about 0.3–0.5, a blank line about 1.4.
PARAGRAPH_GAP = 0.8


@dataclass(frozen=True)
class OcrLine:
    """A recognised line: text, confidence (0..1), bounding box (upright for box engines)."""

    text: str
    confidence: float
    bbox: BBox


def join_paragraphs(paragraphs: list[str]) -> str:
    return "\n\n".join(p for p in paragraphs if p)


def _overlaps(a: BBox, b: BBox) -> bool:
    shared = min(a[3], b[3]) - max(a[1], b[1])
    smaller = min(a[3] - a[1], b[3] - b[1])
    return smaller > 0 and shared > smaller / 2


def _merge(boxes: list[OcrLine]) -> OcrLine:
    boxes = sorted(boxes, key=lambda box: box.bbox[0])
    chars = sum(len(box.text) for box in boxes) or 1
    confidence = sum(box.confidence * len(box.text) for box in boxes) / chars
    bbox = (
        min(box.bbox[0] for box in boxes),
        min(box.bbox[1] for box in boxes),
        max(box.bbox[2] for box in boxes),
        max(box.bbox[3] for box in boxes),
    )
    return OcrLine(" ".join(box.text for box in boxes), round(confidence, 4), bbox)


@dataclass(frozen=True)
class TextBox:
    """One engine detection: its text, score (0..1) and four corners from top-left,
    clockwise, in pixels."""

    text: str
    confidence: float
    points: tuple[tuple[float, float], ...]


def _skew(boxes: list[TextBox]) -> float:
    """The page's rotation: the median angle of the boxes' top edges, in radians."""
    angles = [
        math.atan2(b.points[1][1] - b.points[0][1], b.points[1][0] - b.points[0][0])
        for b in boxes
        if len(b.points) >= 2 and b.points[1][0] > b.points[0][0]
    ]
    return statistics.median(angles) if angles else 0.0


def _upright_bbox(box: TextBox, angle: float) -> BBox:
    """The box's extent once the page is rotated back by ``angle``."""
    cos, sin = math.cos(-angle), math.sin(-angle)
    xs = [x * cos - y * sin for x, y in box.points]
    ys = [x * sin + y * cos for x, y in box.points]
    return int(min(xs)), int(min(ys)), int(max(xs)), int(max(ys))


def group_boxes(boxes: list[TextBox]) -> tuple[list[OcrLine], list[str]]:
    """Group text boxes into lines (reading order) and paragraphs; see the module doc.

    Boxes are compared after undoing the page's skew: on a scan rotated by a degree a
    long line drifts by more than a line height from one end to the other.
    """
    angle = _skew(boxes)
    upright = [
        OcrLine(b.text, b.confidence, _upright_bbox(b, angle)) for b in boxes if b.text.strip()
    ]
    rows: list[list[OcrLine]] = []
    for box in sorted(upright, key=lambda b: b.bbox[1]):
        if rows and _overlaps(rows[-1][-1].bbox, box.bbox):
            rows[-1].append(box)
        else:
            rows.append([box])
    lines = sorted((_merge(row) for row in rows), key=lambda line: line.bbox[1])
    if not lines:
        return [], []
    height = statistics.median(line.bbox[3] - line.bbox[1] for line in lines) or 1
    paragraphs: list[list[str]] = [[lines[0].text]]
    for previous, line in itertools.pairwise(lines):
        if line.bbox[1] - previous.bbox[3] > PARAGRAPH_GAP * height:
            paragraphs.append([])
        paragraphs[-1].append(line.text)
    return lines, [" ".join(parts) for parts in paragraphs]
