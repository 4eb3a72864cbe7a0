"""Reading order of a PDF page: columns found from the geometry of its lines.

A page reads as a sequence of horizontal stretches: full-width ones (a title, an
abstract, a figure or a table across the page) top to bottom, and multi-column ones
column by column. Between two columns runs a *gutter*: a vertical strip that no line
crosses, with text on both sides of it, row after row.

The order is found recursively, like an XY cut that only cuts where columns are:

1. Candidate gutters: the left edge of every line that has another line on its row
   to its left, at least :data:`~doc_pdf_stretch.MIN_GUTTER_HEIGHTS` line heights away.
2. For a candidate x, the regions that cross x cut the page into runs; whether a run
   is a column stretch is :func:`doc_pdf_stretch.column_stretch`'s call.
3. The candidate with the most lines beside a line across it wins. Each of its column
   stretches is read left side, then right side, each side ordered again (a third
   column is found within the right side); what lies between stretches (full-width
   lines, figures, runs that are no column stretch) is ordered again as one flow.
4. Where no gutter is left, regions are read in rows: top to bottom, left to right.
"""

from __future__ import annotations

from collections import Counter

from morag_worker.processors.doc_pdf_stretch import (
    MIN_GUTTER_HEIGHTS,
    ByTop,
    Page,
    Region,
    column_stretch,
)

__all__ = ["Region", "reading_order"]

#: Candidate gutters tried per cut, the best supported first: a real gutter has a line
#: beside it on every row, and a page of scattered labels (a map, a chart) would
#: otherwise try hundreds.
MAX_CANDIDATES = 16


def reading_order(regions: list[Region]) -> list[list[int]]:
    """Indexes of ``regions`` in reading order, grouped in flows.

    A flow is one column of one stretch, or a full-width stretch; the caller may treat
    a change of flow as a column break.
    """
    page = Page.of(regions)
    return [flow for flow in _order(list(range(len(regions))), page) if flow]


def _order(ids: list[int], page: Page) -> list[list[int]]:
    block = page.text_block(ids)
    cut = _best_cut(ids, page, block)
    if cut is None:
        return [_rows(ids, page.regions)]
    flows: list[list[int]] = []
    pending: list[int] = []  # what lies between column stretches, ordered as one flow
    for run in _runs(ids, page.regions, cut):
        stretch = column_stretch(run, page, cut, block)
        if stretch is None:
            pending += run
            continue
        pending += stretch.before
        if pending:
            flows += _order(pending, page)
        flows += _order(stretch.left, page)
        flows += _order(stretch.right, page)
        pending = list(stretch.after)
    if pending:
        flows += _order(pending, page)
    return flows


def _rows(ids: list[int], regions: list[Region]) -> list[int]:
    """Top to bottom; regions side by side on one row, left to right."""
    ordered = sorted(ids, key=lambda i: regions[i].top)
    rows: list[list[int]] = []
    for i in ordered:
        if rows and regions[rows[-1][0]].top <= regions[i].middle <= regions[rows[-1][0]].bottom:
            rows[-1].append(i)
        else:
            rows.append([i])
    return [i for row in rows for i in sorted(row, key=lambda i: regions[i].x0)]


def _crosses(region: Region, cut: float) -> bool:
    return region.x0 < cut - 0.5 and region.x1 > cut + 0.5


def _candidates(ids: list[int], page: Page) -> list[float]:
    """x positions just left of lines that have, on their row, a line far to their left;
    the :data:`MAX_CANDIDATES` that most lines point at."""
    regions, height = page.regions, page.line_height
    texts = ByTop([i for i in ids if regions[i].chars], regions)
    support: Counter[float] = Counter()
    for i in texts.ids:
        r = regions[i]
        lefts = [regions[j].x1 for j in texts.beside(r) if j != i and regions[j].x1 <= r.x0 + 0.5]
        if lefts and r.x0 - max(lefts) >= MIN_GUTTER_HEIGHTS * height:
            support[round(r.x0 - min((r.x0 - max(lefts)) / 2, 0.3 * height))] += 1
    return sorted(x for x, _ in support.most_common(MAX_CANDIDATES))


def _runs(ids: list[int], regions: list[Region], cut: float) -> list[list[int]]:
    """Consecutive regions (by vertical middle) not crossing ``cut``; each crossing one alone."""
    runs: list[list[int]] = []
    current: list[int] = []
    for i in sorted(ids, key=lambda i: regions[i].middle):
        if _crosses(regions[i], cut):
            if current:
                runs.append(current)
            runs.append([i])
            current = []
        else:
            current.append(i)
    if current:
        runs.append(current)
    return runs


def _best_cut(ids: list[int], page: Page, block: tuple[float, float]) -> float | None:
    best, best_beside = None, 0
    for cut in _candidates(ids, page):
        found = 0
        for run in _runs(ids, page.regions, cut):
            stretch = column_stretch(run, page, cut, block)
            if stretch is not None:
                found += stretch.beside
        if found > best_beside:
            best, best_beside = cut, found
    return best
