"""Tests for morag_worker.processors.chunking: heading paths, sizes, tables, pages, ids."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from morag_worker.processors.chunking import (
    chunk_markdown,
    chunk_transcript,
    count_tokens,
    page_marker,
)


def _words(prefix: str, n: int) -> str:
    return " ".join(f"{prefix}{i}" for i in range(n))


DOC = f"""# Guide

Intro paragraph {_words("intro", 20)}.

## Install

{_words("install", 50)}

### Linux

{_words("linux", 30)}

## Use

{_words("use", 10)}
"""


def test_heading_paths_follow_levels() -> None:
    chunks = chunk_markdown(DOC, target_tokens=100, overlap_tokens=0)
    paths = [c.heading_path for c in chunks]
    assert paths == [
        ["Guide"],
        ["Guide", "Install"],
        ["Guide", "Install", "Linux"],
        ["Guide", "Use"],
    ]
    assert chunks[2].text.startswith("### Linux")
    assert "linux29" in chunks[2].text


def test_headings_without_body_are_carried_into_next_chunk() -> None:
    md = "# Title\n\n## Part\n\nbody text here\n"
    chunks = chunk_markdown(md, target_tokens=50, overlap_tokens=0)
    assert len(chunks) == 1
    assert chunks[0].text == "# Title\n\n## Part\n\nbody text here"
    assert chunks[0].heading_path == ["Title", "Part"]


def test_setext_headings() -> None:
    md = "Top\n===\n\nalpha beta\n\nSub\n---\n\ngamma delta\n"
    chunks = chunk_markdown(md, target_tokens=50, overlap_tokens=0)
    assert [c.heading_path for c in chunks] == [["Top"], ["Top", "Sub"]]


def test_sizes_respect_target_and_overlap_repeats_tail() -> None:
    md = "# S\n\n" + _words("w", 500)
    chunks = chunk_markdown(md, target_tokens=100, overlap_tokens=20)
    assert len(chunks) >= 6
    bodies = [c.text.removeprefix("# S\n\n") for c in chunks]
    assert all(count_tokens(b) <= 100 for b in bodies)
    for prev, nxt in itertools.pairwise(bodies):
        assert nxt.split()[:20] == prev.split()[-20:]
    seen = set()
    for b in bodies:
        seen.update(b.split())
    assert seen == set(_words("w", 500).split())  # nothing lost


def test_table_and_code_are_never_split() -> None:
    rows = "\n".join(f"| r{i} | {_words('c', 8)} |" for i in range(40))
    table = "| a | b |\n|---|---|\n" + rows
    code = "```python\n" + "\n".join(f"x{i} = {i}  # some words here" for i in range(60)) + "\n```"
    md = f"# T\n\nbefore {_words('p', 30)}\n\n{table}\n\nmiddle words\n\n{code}\n\nafter\n"
    chunks = chunk_markdown(md, target_tokens=50, overlap_tokens=10)
    table_chunks = [c for c in chunks if "| r0 |" in c.text]
    assert len(table_chunks) == 1 and table in table_chunks[0].text
    assert table_chunks[0].token_count is not None and table_chunks[0].token_count > 50
    code_chunks = [c for c in chunks if "x0 = 0" in c.text]
    assert len(code_chunks) == 1 and code in code_chunks[0].text
    assert not any("x59" in c.text for c in chunks if c is not code_chunks[0])


def test_table_without_leading_pipe_is_a_table() -> None:
    md = "a | b\n--- | ---\n1 | 2\n3 | 4\n\ntext after"
    chunks = chunk_markdown(md, target_tokens=4, overlap_tokens=0)
    assert chunks[0].text == "a | b\n--- | ---\n1 | 2\n3 | 4"


def test_page_markers_set_page_and_are_removed() -> None:
    one, two = _words("one", 30), _words("two", 30)
    md = f"{page_marker(1)}\n\n# A\n\n{one}\n\n{page_marker(2)}\n\n{two}\n"
    chunks = chunk_markdown(md, target_tokens=35, overlap_tokens=0)
    assert [c.page for c in chunks] == [1, 2]
    assert all("<!--" not in c.text for c in chunks)
    assert chunk_markdown("no markers", target_tokens=5, overlap_tokens=0)[0].page is None


def test_ids_are_stable_and_depend_on_source() -> None:
    a = chunk_markdown(DOC, target_tokens=40, overlap_tokens=5, source="a.md")
    b = chunk_markdown(DOC, target_tokens=40, overlap_tokens=5, source="a.md")
    c = chunk_markdown(DOC, target_tokens=40, overlap_tokens=5, source="b.md")
    assert [x.chunk_id for x in a] == [x.chunk_id for x in b]
    assert len({x.chunk_id for x in a}) == len(a)
    assert {x.chunk_id for x in a}.isdisjoint(x.chunk_id for x in c)
    assert [x.index for x in a] == list(range(len(a)))


def test_list_items_stay_whole_when_split() -> None:
    items = "\n".join(f"- item {i} {_words('x', 6)}" for i in range(30))
    chunks = chunk_markdown(items, target_tokens=40, overlap_tokens=0)
    assert len(chunks) > 1
    for c in chunks:
        assert all(line.startswith("- item ") for line in c.text.split("\n"))


def test_empty_and_invalid_sizes() -> None:
    assert chunk_markdown("", target_tokens=10, overlap_tokens=0) == []
    assert chunk_markdown("\n\n<!-- page: 3 -->\n", target_tokens=10, overlap_tokens=0) == []
    with pytest.raises(ValueError, match="overlap_tokens"):
        chunk_markdown("x", target_tokens=10, overlap_tokens=10)
    with pytest.raises(ValueError, match="target_tokens"):
        chunk_transcript([], target_tokens=0)


SEGMENTS: list[dict[str, Any]] = [
    {"start": 0.0, "end": 2.0, "speaker": "SPEAKER_00", "text": "hello there everyone"},
    {"start": 2.0, "end": 4.0, "speaker": "SPEAKER_00", "text": "welcome to the show"},
    {"start": 4.5, "end": 6.0, "speaker": "SPEAKER_01", "text": "thanks for having me"},
    {"start": 6.0, "end": 7.0, "speaker": "SPEAKER_01", "text": ""},
    {"start": 7.0, "end": 9.0, "speaker": "SPEAKER_00", "text": "let us begin with a question"},
    {"start": 9.0, "end": 20.0, "speaker": None, "text": _words("long", 30)},
]


def test_transcript_groups_segments_with_times_and_speakers() -> None:
    chunks = chunk_transcript(SEGMENTS, target_tokens=12, source="talk.wav")
    assert [(c.start_s, c.end_s) for c in chunks] == [(0.0, 6.0), (7.0, 9.0), (9.0, 20.0)]
    assert chunks[0].text == (
        "SPEAKER_00: hello there everyone welcome to the show\nSPEAKER_01: thanks for having me"
    )
    assert chunks[1].text == "SPEAKER_00: let us begin with a question"
    assert chunks[2].text == _words("long", 30)  # oversize segment alone, not split
    assert [c.index for c in chunks] == [0, 1, 2]


def test_transcript_overlap_repeats_whole_segments() -> None:
    chunks = chunk_transcript(SEGMENTS[:5], target_tokens=8, overlap_tokens=4)
    texts = [c.text for c in chunks]
    assert texts[0] == "SPEAKER_00: hello there everyone welcome to the show"
    assert texts[1].startswith("SPEAKER_00: welcome to the show\nSPEAKER_01: thanks")
    assert chunks[1].start_s == 2.0
    again = chunk_transcript(SEGMENTS[:5], target_tokens=8, overlap_tokens=4)
    assert [c.chunk_id for c in again] == [c.chunk_id for c in chunks]


def test_transcript_segment_without_times_is_named() -> None:
    segments = [{"start": 0.0, "end": 1.0, "text": "fine"}, {"start": 1.0, "text": "no end"}]
    with pytest.raises(ValueError, match=r"segment 1 needs a numeric 'end', got None"):
        chunk_transcript(segments, target_tokens=10)
