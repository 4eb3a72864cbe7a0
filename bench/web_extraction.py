"""Web main-text extraction quality: precision and recall per site template, before and
after the cleaning pass, on generated pages (tests/fixtures/gen_web_pages.py) and on the
committed fixtures (tests/fixtures/web/).

    python bench/web_extraction.py [--seeds N]

"before" is the previous pipeline: trafilatura alone on the page as fetched, its body
after a ``# title`` line. "after" is the web processor's ``extract_page`` (cleaning, then
trafilatura, then the title line de-duplicated). Scores are token-level and
order-aware (gen_web_pages.overlap), summed over the pages of a template. Development
templates are measured on the development seeds and on held-out seeds; held-out
templates were never tuned to. A minute or two on two CPU cores; nothing is timed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
sys.path.insert(0, str(ROOT))

import trafilatura  # noqa: E402
from gen_web_pages import (  # noqa: E402
    DEV_SEEDS,
    DEV_TEMPLATES,
    HELD_OUT_SEEDS,
    HELD_OUT_TEMPLATES,
    overlap,
    render,
)

from morag_worker.processors.web import (  # noqa: E402
    _trafilatura_meta,
    extract_page,
    without_title,
)

URL = "https://example.org/post"


def before(html: str) -> str:
    """The pipeline before the cleaning pass: trafilatura alone, same options."""
    title = _trafilatura_meta(html, URL)["title"]
    options = {"url": URL, "include_comments": False, "include_tables": True}
    body = trafilatura.extract(html, output_format="markdown", include_formatting=True, **options)
    if not body:
        body = trafilatura.extract(html, output_format="markdown", favor_recall=True, **options)
    return f"# {title}\n\n{(body or '').strip()}"


def after(html: str) -> str:
    body, meta = extract_page(html, URL)
    return f"# {meta['title']}\n\n{without_title(body, meta['title'])}"


def score(pages: list[tuple[str, str]]) -> tuple[tuple[float, float], tuple[float, float]]:
    """((precision, recall) before, (precision, recall) after) over ``(reference, html)``."""
    out = []
    for extract in (before, after):
        matched = wanted = got = 0
        for reference, html in pages:
            m, w, g = overlap(reference, extract(html))
            matched, wanted, got = matched + m, wanted + w, got + g
        out.append((matched / max(got, 1), matched / max(wanted, 1)))
    return out[0], out[1]


def row(name: str, kind: str, pages: list[tuple[str, str]]) -> str:
    (p0, r0), (p1, r1) = score(pages)
    return f"| {name} | {kind} | {len(pages)} | {p0:.1%} → {p1:.1%} | {r0:.1%} → {r1:.1%} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--seeds", type=int, default=len(DEV_SEEDS), help="pages per template and set"
    )
    args = parser.parse_args()
    dev = list(DEV_SEEDS)[: args.seeds]
    held = list(HELD_OUT_SEEDS)[: args.seeds]
    print("| template | seeds | pages | precision before → after | recall before → after |")
    print("|---|---|---|---|---|")
    for name in DEV_TEMPLATES:
        for kind, seeds in (("dev", dev), ("held-out seeds", held)):
            pages = [(p.article_text(), html) for p, html in (render(name, s) for s in seeds)]
            print(row(name, kind, pages))
    for name in HELD_OUT_TEMPLATES:
        pages = [(p.article_text(), html) for p, html in (render(name, s) for s in dev + held)]
        print(row(f"{name} (held out)", "all", pages))
    fixtures = ROOT / "tests" / "fixtures" / "web"
    for path in sorted(fixtures.glob("*.html")):
        expected = json.loads(path.with_suffix(".json").read_text())
        reference = f"{expected['title']}\n{expected['body']}"
        print(row(f"fixture {path.stem}", "committed", [(reference, path.read_text())]))


if __name__ == "__main__":
    main()
