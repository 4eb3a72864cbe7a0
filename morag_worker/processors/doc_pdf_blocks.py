"""Markdown blocks from a page's flows: headings, paragraphs, lists and tables.

A flow is what :func:`doc_pdf_columns.reading_order` returns: one column of a stretch,
or a full-width stretch, in reading order. Within a flow a line continues the open
paragraph unless one of these says a new block starts:

- a larger step down than the document's usual line pitch (paragraph spacing);
- an indent, in a document whose paragraphs start with one, or else after a line
  that was not indented.

When the previous line had room at its end for the next line's first word, it was
no wrapped line (ragged or justified, those are full): the next line goes on the same
block on a line of its own, so code, addresses and option lists keep their lines.

Across flows (a column break, a page break) the paragraph goes on when the previous
line is full, the next line is not indented, and either the document marks paragraphs
by indents, or it is justified and the previous line ends flush right (a paragraph's
last line is not), or the previous line does not end a sentence. Going down to a new
stretch, the step must also be an ordinary line pitch.

Heading lines of one level that follow each other closely, the first one full, are
one wrapped heading.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from morag_worker.processors.doc_pdf_items import Figure, Line, Table
from morag_worker.processors.doc_pdf_notes import join_lines

_BULLET = re.compile(r"^[•●▪◦‣∙·\-*–]\s+")
_NUMBERED = re.compile(r"^\(?\d{1,3}[.)]\s+")
_MARKDOWN_START = re.compile(r"^(\s*)(#|\||>|```)")
_SENTENCE_END = (".", "!", "?", ":", '."', ".”", ".)")
#: A heading line holds at most this many words; a longer large line is a pull quote.
MAX_HEADING_WORDS = 16
#: A step down this many line heights beyond the usual pitch is paragraph spacing.
PARAGRAPH_STEP_HEIGHTS = 0.2
#: A line starting this many line heights right of its flow's left edge is indented…
INDENT_HEIGHTS = 0.5
#: …unless it starts further than this (centred text, a block set apart).
MAX_INDENT_HEIGHTS = 5.0
#: The next word's width is guessed from its characters and the line's mean
#: character width; it must fit with this margin (letters are wider than spaces).
ROOM_MARGIN = 1.3
#: A justified line ends this close (points) to its column's right edge.
FLUSH_PT = 1.0
#: Wrapped heading lines are at most this many of their line heights apart.
HEADING_GAP_HEIGHTS = 0.5


@dataclass
class Flow:
    """One column of a stretch, or a full-width stretch, in reading order."""

    items: list[Line | Table | Figure]
    left: float = 0.0  # left edge of the flow's text lines
    right: float = float("inf")  # right edge


@dataclass
class TextStyle:
    """What the whole document says about its paragraphs."""

    levels: dict[float, int]  # line size -> heading level
    pitch: float = 0.0  # usual top-to-top distance of body lines; 0 when unknown
    indents: bool = False  # paragraphs start with an indent, not with space
    justified: bool = False  # lines end flush with their column's right edge
    labels: dict[str, str] = field(default_factory=dict)  # footnote label -> Markdown label


@dataclass
class Block:
    """A Markdown block on its way out: its lines, and where it starts and ends (a
    paragraph may go on after a column or page break)."""

    kind: str  # "heading", "paragraph", "list" or "table"
    parts: list[str]
    level: int = 0
    first: Line | None = None
    first_flow: Flow | None = None
    last: Line | None = None
    last_flow: Flow | None = None
    #: Indexes of parts that start a new line of the block (a short line before them).
    breaks: set[int] = field(default_factory=set)

    def markdown(self) -> str:
        if self.kind == "heading":
            return "#" * self.level + " " + " ".join(p.strip() for p in self.parts)
        if self.kind == "list":
            return "\n".join(self.parts)
        if self.kind == "table":
            return self.parts[0]
        lines: list[list[str]] = [[]]
        for k, part in enumerate(self.parts):
            if k in self.breaks:
                lines.append([])
            lines[-1].append(part)
        return "\n".join(escape(join_lines(parts)) for parts in lines)


def escape(text: str) -> str:
    """Keep text that merely starts with ``#``, ``|``, ``>`` from turning into syntax."""
    return _MARKDOWN_START.sub(lambda m: m.group(1) + "\\" + m.group(2), text)


def marked_text(line: Line, labels: dict[str, str]) -> str:
    """The line's text with superscripts that are footnote labels as ``[^label]``."""
    text = line.text
    for start, end in reversed(line.superscripts):
        label = text[start:end].strip()
        if label in labels:
            text = text[:start].rstrip() + f"[^{labels[label]}]" + text[end:]
    return text


def list_item(text: str) -> str:
    """``- item`` for a bulleted line, the line itself when numbered, else empty."""
    if bullet := _BULLET.match(text):
        return "- " + text[bullet.end() :]
    return text if _NUMBERED.match(text) else ""


def heading_level(line: Line, style: TextStyle) -> int:
    return style.levels.get(line.size, 0) if len(line.text.split()) <= MAX_HEADING_WORDS else 0


def indented(line: Line, flow: Flow) -> bool:
    shift = line.x0 - flow.left
    height = line.bottom - line.top
    return INDENT_HEIGHTS * height <= shift <= MAX_INDENT_HEIGHTS * height


def room_for_next_word(previous: Line, line: Line, flow: Flow) -> bool:
    """Whether ``line``'s first word would have fitted at the end of ``previous``."""
    words = line.text.split()
    if not words or flow.right == float("inf") or previous.x1 == float("inf"):
        return False
    return previous.x1 + _word_width(words[0], line) < flow.right


def _word_width(word: str, line: Line) -> float:
    """A guess at ``word``'s width with a space, set as ``line``: its mean character
    width (no more than a wide font's, when the line has a tab's gap in it), with margin."""
    char_width = min((line.x1 - line.x0) / max(len(line.text), 1), 0.6 * (line.bottom - line.top))
    return ROOM_MARGIN * (len(word) + 1) * char_width


def _within(previous: Line, line: Line, flow: Flow, style: TextStyle, in_list: bool) -> str | None:
    """How ``line`` goes on from ``previous`` in one flow: " " (same paragraph), "\\n"
    (same block, new line: the previous line was short) or None (a new block)."""
    height = max(previous.bottom - previous.top, 1.0)
    if style.pitch and abs(previous.size - line.size) < 0.6 and line.top > previous.top:
        if line.top - previous.top > style.pitch + PARAGRAPH_STEP_HEIGHTS * height:
            return None
    elif line.top - previous.bottom >= 0.6 * height:
        return None
    if in_list:
        return " "
    if indented(line, flow) and (style.indents or not indented(previous, flow)):
        return None  # (a line as indented as the one before goes on a block set in)
    return "\n" if room_for_next_word(previous, line, flow) else " "


def carries_over(previous: Line, before: Flow, line: Line, after: Flow, style: TextStyle) -> bool:
    """Whether a paragraph ending ``before`` (a flow) goes on with ``line`` in ``after``."""
    if abs(previous.size - line.size) >= 0.6 or not line.text:
        return False
    if room_for_next_word(previous, line, before) or indented(line, after):
        return False
    if line.top > previous.bottom and style.pitch:  # down to a stretch below
        height = previous.bottom - previous.top
        if line.top - previous.top > style.pitch + PARAGRAPH_STEP_HEIGHTS * height:
            return False
    if style.indents or (style.justified and flush_right(previous, before)):
        return True
    return not previous.text.rstrip().endswith(_SENTENCE_END) or line.text[:1].islower()


def flush_right(line: Line, flow: Flow) -> bool:
    return line.x1 >= flow.right - FLUSH_PT


def continues(block: Block, line: Line, flow: Flow, style: TextStyle) -> str | None:
    """How ``line`` goes on the open block: " ", "\\n" or None (see :func:`_within`)."""
    previous, before = block.last, block.last_flow
    if previous is None or before is None or abs(previous.size - line.size) >= 0.6:
        return None
    if before is flow:
        return _within(previous, line, flow, style, block.kind == "list")
    if block.kind == "paragraph" and carries_over(previous, before, line, flow, style):
        return " "
    return None


def page_blocks(flows: list[Flow], style: TextStyle) -> list[Block]:
    """The blocks of one page, in reading order."""
    blocks: list[Block] = []
    open_block: Block | None = None  # a paragraph or list that the next line may continue
    for flow in flows:
        for item in flow.items:
            if isinstance(item, Figure):
                continue
            if isinstance(item, Table):
                blocks.append(Block("table", [table_markdown(item.rows)]))
                open_block = None
                continue
            open_block = _add_line(blocks, open_block, item, flow, style)
    return [b for b in blocks if b.kind != "table" or b.parts[0]]


def _add_line(
    blocks: list[Block], open_block: Block | None, line: Line, flow: Flow, style: TextStyle
) -> Block | None:
    """Put one line into the blocks; return the block the next line may continue."""
    text = marked_text(line, style.labels).strip()
    if level := heading_level(line, style):
        last = blocks[-1] if blocks else None
        if last and last.kind == "heading" and last.level == level and _wraps(last, line):
            last.parts.append(text)
            last.last, last.last_flow = line, flow
        else:
            blocks.append(Block("heading", [text], level, line, flow, line, flow))
        return None
    if item := list_item(text):
        if open_block is not None and open_block.kind == "list" and open_block.last_flow is flow:
            open_block.parts.append(item)
        else:
            open_block = Block("list", [item], 0, line, flow)
            blocks.append(open_block)
    elif open_block is not None and (joint := continues(open_block, line, flow, style)):
        if open_block.kind == "list":
            open_block.parts[-1] = join_lines([open_block.parts[-1], text])
        else:
            if joint == "\n":
                open_block.breaks.add(len(open_block.parts))
            open_block.parts.append(text)
    else:
        open_block = Block("paragraph", [text], 0, line, flow)
        blocks.append(open_block)
    open_block.last, open_block.last_flow = line, flow
    return open_block


def _wraps(heading: Block, line: Line) -> bool:
    """Whether ``line`` goes on a heading: right below its last line, which had no room
    for the line's first word (the first line of a title may cross a gutter that its
    short second line does not, so the flows may differ)."""
    previous, flow = heading.last, heading.last_flow
    if previous is None or flow is None or line.x0 >= previous.x1 or line.x1 <= previous.x0:
        return False
    height = line.bottom - line.top
    if not -0.3 * height <= line.top - previous.bottom <= HEADING_GAP_HEIGHTS * height:
        return False
    words = line.text.split()
    need = _word_width(words[0], line) if words else 0.0
    return previous.x1 - previous.x0 + need >= flow.right - flow.left  # centred or not


def table_markdown(rows: list[list[str | None]]) -> str:
    """A pipe table; the first row is the header, ragged rows are padded."""
    cleaned = [[" ".join((cell or "").split()).replace("|", "\\|") for cell in row] for row in rows]
    cleaned = [row for row in cleaned if any(row)]
    if not cleaned:
        return ""
    width = max(len(row) for row in cleaned)
    cleaned = [row + [""] * (width - len(row)) for row in cleaned]
    lines = ["| " + " | ".join(cleaned[0]) + " |", "|" + " --- |" * width]
    lines += ["| " + " | ".join(row) + " |" for row in cleaned[1:]]
    return "\n".join(lines)
