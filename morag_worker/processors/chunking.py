"""RAG-ready chunks: heading-aware for Markdown, time-aware for transcripts.

Sizes are counted in whitespace tokens (``len(text.split())``): cheap, deterministic
and tokenizer-free; ``ProcessorSettings.chunk_tokens`` leaves room for sub-word
inflation. A ``chunk_id`` is the first 32 hex digits of sha256(source, index, text),
so the same input always yields the same ids and a retried task never duplicates
vectors downstream.

Markdown conventions the chunker understands (the document processor writes them):

- ATX headings (``#`` … ``######``) and setext headings (``===`` / ``---`` underlines)
  open a section; every chunk carries ``heading_path``, the enclosing headings from
  the outermost down. A chunk never spans two sections; headings with no body of
  their own are carried into the next chunk's text so they are never lost.
- Page markers: a line ``<!-- page: N -->`` (N ≥ 1) says that what follows is on
  page N. Markers are removed from chunk text; a chunk's ``page`` is the page its
  first block starts on, or ``None`` when the Markdown has no markers.
- Pipe tables (consecutive lines starting with ``|``, or a header line followed by a
  ``---|---`` delimiter row) and fenced code blocks (```` ``` ```` or ``~~~``) are never
  split; one larger than the target becomes a chunk of its own.
- Overlap copies the last ``overlap_tokens`` words of a chunk's trailing prose into
  the next chunk of the same section; it never copies table or code rows.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from morag_worker.protocol import Chunk

PAGE_MARKER = re.compile(r"^\s*<!--\s*page:\s*(\d+)\s*-->\s*$")
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_DELIMITER_ROW = re.compile(r"^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)+\|?\s*$|^\s*\|\s*:?-+:?\s*\|\s*$")
_LIST_ITEM = re.compile(r"^\s*([-*+]|\d+[.)])\s")


def page_marker(page: int) -> str:
    """The marker line that tells :func:`chunk_markdown` a new page starts here."""
    return f"<!-- page: {page} -->"


def count_tokens(text: str) -> int:
    return len(text.split())


def chunk_id(source: str, index: int, text: str) -> str:
    digest = hashlib.sha256(f"{source}\x00{index}\x00{text}".encode())
    return digest.hexdigest()[:32]


@dataclass(frozen=True)
class _Block:
    kind: str  # "heading", "text", "table" or "code"
    text: str
    page: int | None
    level: int = 0

    @property
    def tokens(self) -> int:
        return count_tokens(self.text)


def _fence_end(lines: list[str], start: int) -> int:
    """Index after the fenced block opened at ``start`` (an unclosed fence runs to the end)."""
    match = _FENCE.match(lines[start])
    assert match is not None
    fence = match.group(1)
    for i in range(start + 1, len(lines)):
        stripped = lines[i].strip()
        if stripped.startswith(fence[0] * len(fence)) and not stripped.strip(fence[0]):
            return i + 1
    return len(lines)


def _is_table_start(lines: list[str], i: int) -> bool:
    if lines[i].lstrip().startswith("|"):
        return True
    nxt = lines[i + 1] if i + 1 < len(lines) else ""
    return "|" in lines[i] and bool(_DELIMITER_ROW.match(nxt))


def _table_end(lines: list[str], start: int) -> int:
    i = start + 1
    while i < len(lines) and lines[i].strip() and "|" in lines[i]:
        i += 1
    return i


def _paragraph_end(lines: list[str], start: int) -> int:
    """Index after the paragraph at ``start``: up to a blank line or another block's start."""
    i = start + 1
    while i < len(lines):
        line = lines[i]
        if not line.strip() or PAGE_MARKER.match(line) or _ATX.match(line) or _FENCE.match(line):
            break
        if _is_table_start(lines, i) and not _LIST_ITEM.match(line):
            break
        i += 1
    return i


def _parse(markdown: str) -> Iterator[_Block]:
    """Split Markdown into heading, text, table and code blocks, tracking the page."""
    lines = markdown.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    page: int | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if not line.strip():
            i += 1
        elif marker := PAGE_MARKER.match(line):
            page = int(marker.group(1))
            i += 1
        elif heading := _ATX.match(line):
            yield _Block("heading", line.strip(), page, len(heading.group(1)))
            i += 1
        elif _FENCE.match(line):
            end = _fence_end(lines, i)
            yield _Block("code", "\n".join(lines[i:end]), page)
            i = end
        elif _is_table_start(lines, i):
            end = _table_end(lines, i)
            yield _Block("table", "\n".join(lines[i:end]).strip(), page)
            i = end
        elif _SETEXT.match(nxt) and not _LIST_ITEM.match(line):
            level = 1 if nxt.strip().startswith("=") else 2
            yield _Block("heading", "#" * level + " " + line.strip(), page, level)
            i += 2
        else:
            end = _paragraph_end(lines, i)
            yield _Block("text", "\n".join(lines[i:end]).strip(), page)
            i = end


def _split_text(block: _Block, limit: int) -> list[_Block]:
    """Cut prose longer than ``limit`` tokens between lines (list items stay whole when
    they fit), and a line longer than ``limit`` between words."""
    if block.tokens <= limit:
        return [block]
    units: list[str] = []
    for line in block.text.split("\n"):
        words = line.split()
        units += [" ".join(words[i : i + limit]) for i in range(0, len(words), limit)]
    pieces: list[list[str]] = [[]]
    used = 0
    for unit in units:
        tokens = count_tokens(unit)
        if pieces[-1] and used + tokens > limit:
            pieces.append([])
            used = 0
        pieces[-1].append(unit)
        used += tokens
    return [_Block("text", "\n".join(piece), block.page) for piece in pieces]


@dataclass
class _Packer:
    """Packs blocks into chunks of at most ``target`` tokens within one section."""

    target: int
    overlap: int
    source: str
    chunks: list[Chunk] = field(default_factory=list)
    path: list[tuple[int, str]] = field(default_factory=list)
    pending_headings: list[_Block] = field(default_factory=list)
    blocks: list[_Block] = field(default_factory=list)
    carry: str = ""  # overlap words copied from the previous chunk of this section

    def heading(self, block: _Block) -> None:
        self.flush()
        self.carry = ""
        title = block.text.lstrip("#").strip()
        self.path = [(lvl, t) for lvl, t in self.path if lvl < block.level] + [(block.level, title)]
        self.pending_headings.append(block)

    def add(self, block: _Block) -> None:
        used = sum(b.tokens for b in self.blocks) + count_tokens(self.carry)
        if self.blocks and used + block.tokens > self.target:
            self.flush()
            used = count_tokens(self.carry)
        if not self.blocks and used + block.tokens > self.target:
            self.carry = ""  # a table or code block too big to share its chunk with overlap
        self.blocks.append(block)

    def flush(self) -> None:
        if not self.blocks:
            return
        parts = [b.text for b in self.pending_headings]
        parts += [self.carry] if self.carry else []
        parts += [b.text for b in self.blocks]
        text = "\n\n".join(parts)
        index = len(self.chunks)
        self.chunks.append(
            Chunk(
                chunk_id=chunk_id(self.source, index, text),
                index=index,
                text=text,
                heading_path=[title for _, title in self.path],
                page=(self.pending_headings or self.blocks)[0].page,
                token_count=count_tokens(text),
            )
        )
        last = self.blocks[-1]
        tail = last.text.split()[-self.overlap :] if self.overlap and last.kind == "text" else []
        self.carry = " ".join(tail)
        self.pending_headings = []
        self.blocks = []

    def finish(self) -> list[Chunk]:
        self.flush()
        if self.pending_headings:  # a document (or its tail) made only of headings
            self.blocks, self.pending_headings = self.pending_headings, []
            self.flush()
        return self.chunks


def _check_sizes(target_tokens: int, overlap_tokens: int) -> None:
    if target_tokens < 1:
        raise ValueError(f"target_tokens must be at least 1, got {target_tokens}")
    if not 0 <= overlap_tokens < target_tokens:
        raise ValueError(
            f"overlap_tokens must be between 0 and target_tokens - 1, got {overlap_tokens}"
        )


def chunk_markdown(
    markdown: str, *, target_tokens: int, overlap_tokens: int, source: str = ""
) -> list[Chunk]:
    """Split Markdown into heading-aware chunks of at most ``target_tokens`` tokens.

    Only a table or code block larger than the target (which is never split) and the
    headings carried into a chunk's text may exceed it. ``source`` (a file name or
    URL) enters the chunk ids only. Raises ``ValueError`` when the sizes are invalid.
    """
    _check_sizes(target_tokens, overlap_tokens)
    packer = _Packer(target_tokens, overlap_tokens, source)
    for block in _parse(markdown):
        if block.kind == "heading":
            packer.heading(block)
        elif block.kind == "text":
            for piece in _split_text(block, target_tokens - overlap_tokens):
                packer.add(piece)
        else:
            packer.add(block)
    return packer.finish()


def _render_segments(segments: list[dict[str, Any]]) -> str:
    """One line per speaker turn: ``SPEAKER: text``; unlabelled segments have no prefix."""
    lines: list[str] = []
    last_speaker: object = object()
    for seg in segments:
        speaker = seg.get("speaker") or None
        text = str(seg.get("text", "")).strip()
        if lines and speaker == last_speaker:
            lines[-1] += " " + text
        else:
            lines.append(f"{speaker}: {text}" if speaker else text)
        last_speaker = speaker
    return "\n".join(lines)


def _transcript_chunk(group: list[dict[str, Any]], index: int, source: str) -> Chunk:
    text = _render_segments(group)
    return Chunk(
        chunk_id=chunk_id(source, index, text),
        index=index,
        text=text,
        start_s=float(group[0]["start"]),
        end_s=float(group[-1]["end"]),
        token_count=count_tokens(text),
    )


def _check_times(seg: dict[str, Any], number: int) -> None:
    for key in ("start", "end"):
        value: Any = seg.get(key)
        try:
            float(value)  # numpy scalars included
        except (TypeError, ValueError):
            raise ValueError(f"segment {number} needs a numeric {key!r}, got {value!r}") from None


def _overlap_tail(group: list[dict[str, Any]], overlap_tokens: int) -> list[dict[str, Any]]:
    """The whole trailing segments of ``group`` that fit in the overlap (never all of it)."""
    tail: list[dict[str, Any]] = []
    used = 0
    for seg in reversed(group[1:]):
        used += count_tokens(str(seg.get("text", "")))
        if used > overlap_tokens:
            break
        tail.insert(0, seg)
    return tail


def chunk_transcript(
    segments: list[dict[str, Any]],
    *,
    target_tokens: int,
    overlap_tokens: int = 0,
    source: str = "",
) -> list[Chunk]:
    """Group consecutive speech segments into chunks of about ``target_tokens`` tokens.

    A segment is never split (one longer than the target is a chunk of its own) and
    segments with empty text are skipped. Each chunk's ``start_s``/``end_s`` span its
    segments; speaker labels prefix each turn. With ``overlap_tokens`` the next chunk
    repeats whole trailing segments of the previous one. Every segment with text needs
    numeric ``start`` and ``end``; a ``ValueError`` names the first one that lacks them.
    """
    _check_sizes(target_tokens, overlap_tokens)
    chunks: list[Chunk] = []
    group: list[dict[str, Any]] = []
    fresh = 0  # segments in ``group`` that are not overlap copies
    for number, seg in enumerate(segments):
        tokens = count_tokens(str(seg.get("text", "")))
        if tokens == 0:
            continue
        _check_times(seg, number)
        used = sum(count_tokens(str(s.get("text", ""))) for s in group)
        if fresh and used + tokens > target_tokens:
            chunks.append(_transcript_chunk(group, len(chunks), source))
            group = _overlap_tail(group, overlap_tokens) if overlap_tokens else []
            fresh = 0
            if sum(count_tokens(str(s.get("text", ""))) for s in group) + tokens > target_tokens:
                group = []
        group.append(seg)
        fresh += 1
    if fresh:
        chunks.append(_transcript_chunk(group, len(chunks), source))
    return chunks
