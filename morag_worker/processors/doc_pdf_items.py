"""What a PDF page holds once read: positioned text lines, ruled tables, figures.

Coordinates are points, top-down (y grows down the page), as pdfplumber has them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Line:
    """A run of text on one visual line, within one column."""

    top: float
    bottom: float
    size: float  # median character height in points; 0 when unknown
    text: str
    x0: float = 0.0
    x1: float = float("inf")
    #: ``(start, end)`` character ranges of ``text`` set smaller and raised:
    #: footnote markers (kept when a footnote on the page has that label) or exponents.
    superscripts: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class Table:
    top: float
    bbox: tuple[float, float, float, float]  # x0, top, x1, bottom
    rows: list[list[str | None]]


@dataclass(frozen=True)
class Figure:
    """An image or a drawn shape without text on it: it only steers the reading order."""

    bbox: tuple[float, float, float, float]  # x0, top, x1, bottom


@dataclass
class PageItems:
    number: int
    lines: list[Line]
    tables: list[Table]
    #: Set for a page read by OCR: its paragraphs in reading order.
    ocr_paragraphs: list[str] | None = field(default=None)
    #: The OCR engine's confidence (0..1) for such a page.
    ocr_confidence: float | None = None
    #: Set for a page converted by docling's PDF pipeline: its Markdown as is.
    markdown: str | None = None
    figures: list[Figure] = field(default_factory=list)

    @property
    def has_text_layer(self) -> bool:
        return self.ocr_paragraphs is None and self.markdown is None
