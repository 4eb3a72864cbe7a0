"""Footnotes: found at the foot of a page, kept together, their markers kept on their words.

A footnote is set smaller than the body text, below any body text in its column, and
starts with its label: a number or a symbol (``*``, ``†``, ``‡``, ``§``, ``¶``), raised
or not. The foot area counts as footnotes only when some label there is also raised
in the page's body (a marker) or raised in the note itself; so a caption or small
print at a page's foot stays in the body.

Markdown footnotes carry them (``word[^1]`` in the text, ``[^1]: text`` at the end of
the page): a reader, or a model reading a chunk, sees which word a note belongs to,
and the note stays on its page, where the chunker keeps it near its marker.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from morag_worker.processors.doc_pdf_columns import Region, reading_order
from morag_worker.processors.doc_pdf_items import Line

#: Footnote text is set at most this share of the body size.
NOTE_SIZE = 0.92
_LABEL = re.compile(r"^(\d{1,3}|[*†‡§¶]{1,3})[.)]?\s+(?=\S)")
_SYMBOLS = "*†‡§¶"
_SOFT_HYPHENS = ("\ufffe", "\u00ad")


@dataclass(frozen=True)
class Footnote:
    label: str  # as printed
    text: str


def superscript_texts(line: Line) -> list[str]:
    return [line.text[a:b].strip() for a, b in line.superscripts]


def _label(line: Line) -> tuple[str, str, bool] | None:
    """The label a footnote line starts with, the text after it, and whether it is raised."""
    if line.superscripts and line.superscripts[0][0] == 0:
        start, end = line.superscripts[0]
        label = line.text[start:end].strip()
        if label.isdigit() or (label and all(c in _SYMBOLS for c in label)):
            return label, line.text[end:].strip(), True
    if match := _LABEL.match(line.text):
        return match[1], line.text[match.end() :], False
    return None


def _foot_lines(lines: list[Line], body_size: float) -> list[int]:
    """Small lines with no larger text below them in their column, in reading order."""
    limit = body_size * NOTE_SIZE
    small = [
        i
        for i, line in enumerate(lines)
        if 0 < line.size <= limit
        and not any(
            o.size > limit and o.top >= line.bottom - 1 and o.x0 < line.x1 and o.x1 > line.x0
            for o in lines
        )
    ]
    regions = [
        Region(
            lines[i].x0,
            lines[i].top,
            lines[i].x1,
            lines[i].bottom,
            len(lines[i].text),
            lines[i].size,
        )
        for i in small
    ]
    return [small[k] for flow in reading_order(regions) for k in flow]


def split_footnotes(lines: list[Line], body_size: float) -> tuple[list[Line], list[Footnote]]:
    """The page's body lines, and its footnotes in order (none when the foot holds none)."""
    if body_size <= 0:
        return lines, []
    foot = _foot_lines(lines, body_size)
    while foot and _label(lines[foot[0]]) is None:  # small print above the notes stays
        foot.pop(0)
    if not foot:
        return lines, []
    in_foot = set(foot)
    markers = {
        t for k, line in enumerate(lines) if k not in in_foot for t in superscript_texts(line)
    }
    notes: list[tuple[str, list[str]]] = []
    confirmed = False
    for n, k in enumerate(foot):
        found = _label(lines[k])
        if found is None:
            if _far_below(lines[foot[n - 1]], lines[k]):  # small print under the notes
                foot = foot[:n]
                break
            notes[-1][1].append(lines[k].text)
            continue
        label, text, raised = found
        confirmed = confirmed or raised or label in markers
        notes.append((label, [text]))
    if not confirmed:
        return lines, []
    taken = set(foot)
    body = [line for k, line in enumerate(lines) if k not in taken]
    return body, [Footnote(label, join_lines(parts)) for label, parts in notes]


def _far_below(previous: Line, line: Line) -> bool:
    """Whether ``line`` starts more than a line height below ``previous``."""
    return line.top - previous.bottom > previous.bottom - previous.top


def join_lines(parts: list[str]) -> str:
    """Lines of one paragraph as one text; a hyphen at a line end before a lowercase
    letter goes, and so does a soft hyphen (pdfium reads one as U+FFFE)."""
    text = ""
    for part in parts:
        part = part.strip()
        if not text:
            text = part
        elif text.endswith(_SOFT_HYPHENS) or (
            text.endswith("-") and text[-2:-1].isalpha() and part[:1].islower()
        ):
            text = text[:-1] + part
        else:
            text = f"{text} {part}"
    return text
