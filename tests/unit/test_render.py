"""The dashboard's Markdown rendering (server/render.py): hostile results come out inert,
and long ones are cut into parts that cover the text exactly, never inside fenced code."""

from __future__ import annotations

import itertools
import random
from html.parser import HTMLParser

from morag_worker.server.render import HARD_PART_CHARS, PART_CHARS, render_part, split_parts

#: Tags markdown-it makes from Markdown; anything else came from the input.
ALLOWED_TAGS = {
    "a", "blockquote", "br", "code", "em", "h3", "h4", "h5", "h6", "hr", "li", "ol", "p",
    "pre", "s", "strong", "table", "tbody", "td", "th", "thead", "tr", "ul",
}  # fmt: skip
ALLOWED_ATTRS = {"href", "title", "rel", "target", "class", "start", "style"}

HOSTILE = [
    "<script>window.pwned=1</script>",
    '<img src=x onerror="window.pwned=2">',
    "<svg onload=alert(1)>",
    '<iframe src="https://evil.example/"></iframe>',
    '<a href="javascript:alert(3)">click</a>',
    "[click](javascript:alert(4))",
    "[click](JaVaScRiPt:alert(5))",
    "[click](&#106;avascript:alert(6))",
    "[click](java\tscript:alert(7))",
    "[click](vbscript:msgbox(8))",
    "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCg5KTwvc2NyaXB0Pg==)",
    "[click](file:///etc/passwd)",
    '[x](https://ok.example/ "a\\" onmouseover=\\"alert(10)")',
    "<javascript:alert(11)>",
    "![pic](https://tracker.example/pixel.png)",
    '![x" onerror="alert(12)](https://e.example/i.png)',
    "<!-- <script>alert(13)</script> -->",
    "<style>body{display:none}</style>",
    '<div style="position:fixed">overlay</div>',
    "| a | <b onclick=alert(14)>b</b> |\n|---|---|\n| <i>1</i> | 2 |",
    "```html\n<script>alert(15)</script>\n```",
    '<form action="https://evil.example"><input name=q></form>',
    '<meta http-equiv="refresh" content="0;url=https://evil.example">',
    '<base href="https://evil.example/">',
]


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, dict(attrs)))


def _elements(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Elements()
    parser.feed(html)
    return parser.found


def _inert(html: str) -> None:
    for tag, attrs in _elements(html):
        assert tag in ALLOWED_TAGS, (tag, html)
        assert set(attrs) <= ALLOWED_ATTRS, (attrs, html)
        assert "style" not in attrs, html
        href = (attrs.get("href") or "").strip().lower()
        if href:
            assert href.startswith(("http://", "https://", "mailto:", "#", "/")), html


def test_each_hostile_fragment_comes_out_inert() -> None:
    for fragment in HOSTILE:
        html, parts = render_part(f"# Title\n\n{fragment}\n\nafter\n", 0)
        assert parts == 1
        _inert(html)
        assert "<script" not in html and "<img" not in html and "<iframe" not in html


def test_fragments_mixed_at_random_come_out_inert() -> None:
    rng = random.Random(15)
    for _ in range(200):
        text = "".join(
            rng.choice(["", "\n", "\n\n", " ", "> ", "- ", "1. ", "**", "`"]) + rng.choice(HOSTILE)
            for _ in range(rng.randint(1, 8))
        )
        _inert(render_part(text, 0)[0])


def test_markdown_still_renders_and_headings_sit_under_the_page() -> None:
    html, _ = render_part(
        "# Report\n\n## Sales\n\n**up** 10 %\n\n| a | b |\n|---|---|\n| 1 | 2 |", 0
    )
    assert "<h3>Report</h3>" in html and "<h4>Sales</h4>" in html
    assert "<strong>up</strong>" in html and "<td>1</td>" in html
    html, _ = render_part("[site](https://example.org/x) ![logo](https://example.org/l.png)", 0)
    links = [attrs for tag, attrs in _elements(html) if tag == "a"]
    assert links[0]["href"] == "https://example.org/x" and links[0]["rel"] == (
        "noopener noreferrer nofollow"
    )
    assert "[image: logo]" in html  # images are named, never loaded


def _document(rng: random.Random, sections: int) -> str:
    out = []
    for n in range(sections):
        out.append(f"## Section {n}\n\n" + " ".join(["word"] * rng.randint(5, 400)) + "\n\n")
        if n % 37 == 0:  # fenced code with blank lines inside, which must never be cut
            out.append("```\nline\n\n\nstill code " + "x" * rng.randint(0, 5000) + "\n```\n\n")
    return "".join(out)


def test_parts_cover_the_text_exactly_and_never_cut_fenced_code() -> None:
    rng = random.Random(7)
    text = _document(rng, 3000)
    parts = split_parts(text)
    assert len(parts) > 10 and parts[0][0] == 0 and parts[-1][1] == len(text)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(parts))
    for start, end in parts:
        assert end - start <= HARD_PART_CHARS
        assert text[start:end].count("```") % 2 == 0  # fences open and close in one part
    assert len(split_parts("short")) == 1
    html, count = render_part(text, len(parts) - 1)
    assert count == len(parts) and "Section 2999" in html


def test_text_without_blank_lines_is_still_cut() -> None:
    endless = "y" * (5 * HARD_PART_CHARS + 17)
    parts = split_parts(endless)
    assert max(end - start for start, end in parts) <= HARD_PART_CHARS
    assert "".join(endless[s:e] for s, e in parts) == endless
    lines = ("z" * 100 + "\n") * (3 * HARD_PART_CHARS // 100)
    assert max(e - s for s, e in split_parts(lines)) <= HARD_PART_CHARS
    assert PART_CHARS < HARD_PART_CHARS
