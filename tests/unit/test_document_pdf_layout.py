"""PDF layout on generated documents: columns, page furniture, wrapped titles, footnotes.

The PDFs come from ``tests/fixtures/gen_layouts.py`` (seeded, written into a temporary
directory) and are scored by ``tests/fixtures/layout_score.py``. The seeds here were not
looked at while the layout code was written (seeds 0-29 and 100-129 were); every kind
comes in several styles (fonts, sizes, margins, gutters, column widths, alignment).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest

from morag_worker.processors.base import TaskContext
from morag_worker.processors.document import DocumentProcessor
from morag_worker.protocol import TaskResult

sys.path.insert(0, str(Path(__file__).parents[1] / "fixtures"))
from gen_layouts import KINDS, generate
from layout_score import Score, score

SEEDS = (500, 501, 502)


def convert(path: Path) -> TaskResult:
    return DocumentProcessor().process(TaskContext.local("document", [path]))


@pytest.fixture(scope="module")
def converted(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, tuple[dict[str, Any], TaskResult]]:
    """Every kind and seed, generated and converted once for the module."""
    root = tmp_path_factory.mktemp("layouts")
    out = {}
    for kind in KINDS:
        for seed in SEEDS:
            path = root / f"{kind}-{seed}.pdf"
            truth = generate(kind, seed, path)
            out[f"{kind}-{seed}"] = (truth, convert(path))
    return out


def scores(converted: dict[str, tuple[dict[str, Any], TaskResult]], kind: str) -> list[Score]:
    return [score(r.content, t) for key, (t, r) in converted.items() if key.startswith(kind + "-")]


@pytest.mark.parametrize("kind", KINDS)
def test_reading_order_and_structure_per_layout(converted: Any, kind: str) -> None:
    found = scores(converted, kind)
    assert all(s.order >= 0.95 for s in found), found
    assert sum(s.whole for s in found) / len(found) >= 0.9, found
    assert all(s.headings >= 0.95 for s in found), found
    assert all(s.furniture == 0 for s in found), found


@pytest.mark.parametrize("kind", ["two_columns", "three_columns", "mixed"])
def test_columns_are_never_interleaved(converted: Any, kind: str) -> None:
    # Each paragraph of the output is a piece of one paragraph of the truth: lines of
    # two columns never mix. (A paragraph may come out in two pieces, at a column break
    # after a full stop, where a column break and a paragraph end look alike.)
    for key in (f"{kind}-{seed}" for seed in SEEDS):
        truth, result = converted[key]
        paragraphs = [" ".join(t.split()) for k, t in truth["elements"] if k == "paragraph"]
        once = set(truth["furniture_drawn"]) - set(truth["furniture"])  # a header on one page
        for block in result.content.split("\n\n"):
            text = " ".join(block.split())
            if text and not text.startswith(("#", "<!--", "[^")) and text not in once:
                assert any(text in p for p in paragraphs), (key, text[:120])


def test_wrapped_titles_are_one_heading(converted: Any) -> None:
    for seed in SEEDS:
        truth, result = converted[f"wrapped_titles-{seed}"]
        found = [h for h in re.findall(r"^#+ (.+)$", result.content, re.M)]
        wanted = [t for k, t in truth["elements"] if k == "heading"]
        assert found == wanted
        assert len(wanted[0].split()) >= 12  # the title wraps onto a second line


def test_running_headers_footers_and_page_numbers_leave_the_body(converted: Any) -> None:
    for seed in SEEDS:
        truth, result = converted[f"furniture-{seed}"]
        assert truth["pages"] >= 2 and truth["furniture"]
        assert score(result.content, truth).furniture == 0
        listed = " | ".join(result.metadata.get("page_furniture", []))
        for text in truth["furniture"]:
            if not re.fullmatch(r"(Page )?[- ]*\d+[- ]*( of \d+)?", text):  # not a page number
                words = [w for w in text.split() if not w.isdigit()]  # page numbers become #
                assert all(w in listed for w in words), (text, listed)


def test_footnote_markers_stay_on_their_words_and_notes_end_their_page(converted: Any) -> None:
    for seed in SEEDS:
        truth, result = converted[f"footnotes-{seed}"]
        assert truth["footnotes"]
        found = score(result.content, truth)
        assert found.markers == 1.0 and found.footnotes == 1.0, found
        assert not re.search(r"^\d{1,3}$", result.content, re.M)  # no lone marker lines
        for page in result.content.split("<!-- page: ")[1:]:  # definitions close their page
            blocks = page.strip().split("\n\n")
            notes = [k for k, b in enumerate(blocks) if b.startswith("[^")]
            assert notes in ([], [len(blocks) - 1])
