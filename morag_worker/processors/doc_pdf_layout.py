"""From positioned PDF lines, tables and figures to Markdown, page by page.

PDFs carry no structure, only text placed on pages, so structure is inferred, in
this order:

1. Page furniture (:mod:`doc_pdf_furniture`): running headers and footers and page
   numbers leave the body; the running texts are reported once, as metadata.
2. Footnotes (:mod:`doc_pdf_notes`) leave the body and come back at the end of their
   page as ``[^N]: text``; their markers stay on their words as ``[^N]``.
3. Sizes: the body size is the size that sets the most characters in the document.
   Short lines (≤ 16 words) at least 10 % and 1 pt larger are headings; their
   distinct sizes, largest first, become levels 1-4.
4. Reading order (:mod:`doc_pdf_columns`): columns found from the lines' geometry,
   read column by column between full-width stretches.
5. Blocks (:mod:`doc_pdf_blocks`): lines join into paragraphs, wrapped headings into
   one heading, bulleted and numbered lines into lists; ruled tables become pipe
   tables where they stand. A paragraph that runs on over a page break is kept whole
   on the page where it starts.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from morag_worker.processors.doc_pdf_blocks import (
    MAX_HEADING_WORDS,
    Block,
    Flow,
    TextStyle,
    carries_over,
    escape,
    flush_right,
    heading_level,
    indented,
    list_item,
    page_blocks,
    room_for_next_word,
    table_markdown,
)
from morag_worker.processors.doc_pdf_columns import Region, reading_order
from morag_worker.processors.doc_pdf_furniture import find_furniture
from morag_worker.processors.doc_pdf_items import Figure, Line, PageItems, Table
from morag_worker.processors.doc_pdf_notes import Footnote, split_footnotes

__all__ = ["Line", "PageItems", "RenderedPdf", "Table", "render_document", "render_pages"]
__all__ += ["table_markdown"]  # re-exported: the tests and older callers import them from here

_MARKER = re.compile(r"\[\^([^\]]+)\]")
#: Distinct heading sizes beyond this many share the deepest level.
MAX_LEVELS = 4
#: A document is justified when more than this share of the lines followed by another
#: line of their paragraph end flush right: in a justified text all of them do, in a
#: ragged one only the few that happen to be longest.
JUSTIFIED_SHARE = 0.5


@dataclass(frozen=True)
class RenderedPdf:
    pages: list[tuple[PageItems, str]]  # each page with its Markdown body
    furniture: list[str]  # running headers and footers, once each


def body_size(lines: Iterable[Line]) -> float:
    """The size that sets the most characters; 0 when no line has a size."""
    weights: Counter[float] = Counter()
    for line in lines:
        if line.size > 0:
            weights[line.size] += len(line.text)
    return weights.most_common(1)[0][0] if weights else 0.0


def heading_levels(lines: list[Line], body: float) -> dict[float, int]:
    """Font size → heading level, from the whole document's size statistics."""
    if not body:
        return {}
    sizes = {
        line.size
        for line in lines
        if line.size >= max(body * 1.1, body + 1.0) and len(line.text.split()) <= MAX_HEADING_WORDS
    }
    ordered = sorted(sizes, reverse=True)
    return {size: min(i + 1, MAX_LEVELS) for i, size in enumerate(ordered)}


def _region(item: Line | Table | Figure) -> Region:
    if isinstance(item, Line):
        return Region(
            item.x0, item.top, item.x1, item.bottom, len(item.text), item.bottom - item.top
        )
    x0, top, x1, bottom = item.bbox
    return Region(x0, top, x1, bottom)


def _same_row(last: Line, line: Line) -> bool:
    return last.top <= (line.top + line.bottom) / 2 <= last.bottom and line.x0 >= last.x1


def _merge_row(a: Line, b: Line) -> Line:
    shift = len(a.text) + 1
    size = a.size if len(a.text) >= len(b.text) else b.size
    sups = a.superscripts + tuple((s + shift, e + shift) for s, e in b.superscripts)
    return Line(
        min(a.top, b.top), max(a.bottom, b.bottom), size, f"{a.text} {b.text}", a.x0, b.x1, sups
    )


def _flow(items: list[Line | Table | Figure]) -> Flow:
    """One flow, with the pieces of a line that sit side by side on one row made one line."""
    merged: list[Line | Table | Figure] = []
    for item in items:
        last = merged[-1] if merged else None
        if isinstance(item, Line) and isinstance(last, Line) and _same_row(last, item):
            merged[-1] = _merge_row(last, item)
        else:
            merged.append(item)
    lines = [i for i in merged if isinstance(i, Line)]
    if not lines:
        return Flow(merged)
    return Flow(merged, min(line.x0 for line in lines), _right_edge(lines))


def _right_edge(lines: list[Line]) -> float:
    """The right edge of a flow's text: the rightmost line end that another line's end
    comes close to (a caption or a line sticking out alone does not set it)."""
    ends = sorted((line.x1 for line in lines), reverse=True)
    height = sorted(line.bottom - line.top for line in lines)[len(lines) // 2]
    for end, following in itertools.pairwise(ends):
        if end - following <= 0.5 * height:
            return end
    return ends[0]


def page_flows(page: PageItems, lines: list[Line]) -> list[Flow]:
    items: list[Line | Table | Figure] = [*lines, *page.tables, *page.figures]
    return [_flow([items[i] for i in ids]) for ids in reading_order([_region(i) for i in items])]


def _pairs(flows: Iterable[Flow]) -> Iterable[tuple[Line, Line, Flow]]:
    for flow in flows:
        lines = [i for i in flow.items if isinstance(i, Line)]
        for previous, line in itertools.pairwise(lines):
            yield previous, line, flow


def text_style(flows: list[Flow], levels: dict[float, int], body: float) -> TextStyle:
    """The document's line pitch; whether paragraphs start with indents; whether it is justified."""
    style = TextStyle(levels)
    steps = sorted(
        line.top - previous.top
        for previous, line, _ in _pairs(flows)
        if abs(previous.size - body) < 0.6
        and abs(line.size - body) < 0.6
        and 0 < line.top - previous.top < 3 * (line.bottom - line.top)
    )
    if steps:
        style.pitch = steps[len(steps) // 2]
        style.indents = _paragraphs_indented(flows, style)
        style.justified = _justified(flows, style, body)
    return style


def _paragraphs_indented(flows: list[Flow], style: TextStyle) -> bool:
    """More paragraphs start with an indent (after a short line) than with space."""
    by_indent = by_space = 0
    for previous, line, flow in _pairs(flows):
        if heading_level(line, style) or heading_level(previous, style) or list_item(line.text):
            continue
        if line.top - previous.top > style.pitch + 0.2 * (line.bottom - line.top):
            by_space += 1
        elif indented(line, flow) and not indented(previous, flow):
            by_indent += room_for_next_word(previous, line, flow)
    return by_indent >= 2 and by_indent > by_space


def _justified(flows: list[Flow], style: TextStyle, body: float) -> bool:
    inner = [
        flush_right(previous, flow)
        for previous, line, flow in _pairs(flows)
        if abs(previous.size - body) < 0.6
        and 0 < line.top - previous.top <= style.pitch + 0.2 * (line.bottom - line.top)
    ]
    return len(inner) >= 4 and sum(inner) > JUSTIFIED_SHARE * len(inner)


def _labels(notes: list[Footnote], page: int, used: set[str]) -> dict[str, str]:
    """Markdown labels for a page's footnotes: as printed, or page-qualified when taken
    (numbering that starts again on every page)."""
    labels = {}
    for note in notes:
        label = note.label if note.label not in used else f"p{page}-{note.label}"
        used.add(label)
        labels[note.label] = label
    return labels


@dataclass
class _TextPage:
    """One page with a text layer, on its way to Markdown."""

    lines: list[Line]  # the body: no furniture, no footnotes
    notes: list[Footnote] = field(default_factory=list)
    flows: list[Flow] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)
    definitions: list[tuple[str, str]] = field(default_factory=list)  # (Markdown label, text)

    def markdown(self) -> str:
        parts = [b.markdown() for b in self.blocks]
        if self.definitions:
            parts.append("\n".join(f"[^{label}]: {text}" for label, text in self.definitions))
        return "\n\n".join(p for p in parts if p)


def render_document(pages: list[PageItems]) -> RenderedPdf:
    """Each page with its Markdown body, and the running headers and footers found."""
    furniture, running = find_furniture(pages)
    text = {
        p.number: _TextPage(
            [ln for i, ln in enumerate(p.lines) if i not in furniture.get(p.number, set())]
        )
        for p in pages
        if p.has_text_layer
    }
    body = body_size(line for page in text.values() for line in page.lines)
    for page in text.values():
        page.lines, page.notes = split_footnotes(page.lines, body)
    levels = heading_levels([line for page in text.values() for line in page.lines], body)
    for number, page in text.items():
        page.flows = page_flows(next(p for p in pages if p.number == number), page.lines)
    style = text_style([flow for page in text.values() for flow in page.flows], levels, body)
    used: set[str] = set()
    for number, page in text.items():
        labels = _labels(page.notes, number, used)
        page.blocks = page_blocks(page.flows, dataclasses.replace(style, labels=labels))
        page.definitions = [(labels[n.label], n.text) for n in page.notes]
    _join_across_pages(text, style)
    return RenderedPdf([(p, _page_markdown(p, text.get(p.number))) for p in pages], running)


def _page_markdown(page: PageItems, text: _TextPage | None) -> str:
    if page.markdown is not None:
        return page.markdown
    if page.ocr_paragraphs is not None:
        return "\n\n".join(escape(p) for p in page.ocr_paragraphs if p.strip())
    return text.markdown() if text is not None else ""


def _join_across_pages(text: dict[int, _TextPage], style: TextStyle) -> None:
    """A paragraph running on over a page break stays whole, on the page where it starts;
    the footnotes whose markers move go along."""
    for number, before in text.items():
        after = text.get(number + 1)
        if after is None or not before.blocks or not after.blocks:
            continue
        last, first = before.blocks[-1], after.blocks[0]
        if last.kind != "paragraph" or first.kind != "paragraph":
            continue
        if not (last.last and last.last_flow and first.first and first.first_flow):
            continue
        if carries_over(last.last, last.last_flow, first.first, first.first_flow, style):
            last.parts += first.parts
            last.last, last.last_flow = first.last, first.last_flow
            after.blocks.pop(0)
            markers = {m for part in first.parts for m in _MARKER.findall(part)}
            before.definitions += [d for d in after.definitions if d[0] in markers]
            after.definitions = [d for d in after.definitions if d[0] not in markers]


def render_pages(pages: list[PageItems]) -> list[tuple[PageItems, str]]:
    """Each page with its Markdown body (blocks separated by blank lines)."""
    return render_document(pages).pages
