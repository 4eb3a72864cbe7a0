"""PDF layout quality: reading order, paragraphs, headings, footnotes, furniture.

    python bench/pdf_layout.py [--seeds 0-9] [--kinds two_columns,mixed] [--show KIND-SEED]

Generates each layout kind of ``tests/fixtures/gen_layouts.py`` for each seed, converts
it with the document processor and scores the Markdown (``tests/fixtures/layout_score.py``).
The baseline, measured in the same run, is pdfium's plain text of each page (stream
order, one block per line), scored for order only. Prints one row per kind: mean and
worst order score, then the means of the other scores. ``--show`` prints one
conversion's Markdown. Nothing here asserts: read the table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
sys.path.insert(0, str(ROOT))

from gen_layouts import KINDS, generate, parse_kinds, parse_seeds  # noqa: E402
from layout_score import Score, score  # noqa: E402

from morag_worker.processors.base import TaskContext  # noqa: E402
from morag_worker.processors.doc_pdf import convert_pdf  # noqa: E402


def convert(path: Path) -> str:
    return convert_pdf(path, TaskContext.local("document", [path]))[0]


def plain_text(path: Path) -> str:
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(str(path))
    parts = []
    for index in range(len(pdf)):
        text = pdf[index].get_textpage().get_text_range()
        lines = [line.strip() for line in text.replace("\r", "").split("\n") if line.strip()]
        parts.append(f"<!-- page: {index + 1} -->\n\n" + "\n\n".join(lines))
    pdf.close()
    return "\n\n".join(parts)


HEADER = (
    "kind            docs pages  order  worst  base   whole  heads  marks  notes  furn  ms/page"
)


def row(kind: str, rows: list[Score], base: list[float], pages: int, seconds: float) -> str:
    n = len(rows)

    def mean(field: str) -> float:
        return sum(getattr(r, field) for r in rows) / n

    worst = min(r.order for r in rows)
    return (
        f"{kind:<15} {n:>4} {pages:>5}  {mean('order'):.3f}  {worst:.3f}  {sum(base) / n:.3f}"
        f"  {mean('whole'):.3f}  {mean('headings'):.3f}  {mean('markers'):.3f}"
        f"  {mean('footnotes'):.3f}  {sum(r.furniture for r in rows):>4}"
        f"  {1000 * seconds / pages:>7.1f}"
    )


def show(kind_seed: str, tmp: Path) -> None:
    kind, _, seed = kind_seed.rpartition("-")
    if kind not in KINDS or not seed.isdigit():
        sys.exit(f"--show wants KIND-SEED, e.g. mixed-7, with KIND one of {', '.join(KINDS)}")
    path = tmp / "show.pdf"
    truth = generate(kind, int(seed), path)
    markdown = convert(path)
    print(markdown)
    print(score(markdown, truth))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=parse_seeds, default=list(range(10)), help="7 or 100-119")
    parser.add_argument("--kinds", type=parse_kinds, default=list(KINDS), help="comma-separated")
    parser.add_argument("--show", help="print the Markdown of one KIND-SEED")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.show:
            show(args.show, Path(tmp))
            return
        print(HEADER)
        for kind in args.kinds:
            rows: list[Score] = []
            base: list[float] = []
            pages, seconds = 0, 0.0
            for seed in args.seeds:
                path = Path(tmp) / f"{kind}-{seed}.pdf"
                truth = generate(kind, seed, path)
                started = time.perf_counter()
                markdown = convert(path)
                seconds += time.perf_counter() - started
                pages += truth["pages"]
                rows.append(score(markdown, truth))
                base.append(score(plain_text(path), truth).order)
                if rows[-1].order < 0.95:
                    print(f"  {kind}-{seed}: order {rows[-1].order:.3f}", file=sys.stderr)
            print(row(kind, rows, base, pages, seconds))


if __name__ == "__main__":
    main()
