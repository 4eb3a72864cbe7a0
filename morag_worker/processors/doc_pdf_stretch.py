"""Is a run of a page's regions, split at a candidate gutter, a stretch of columns?

:mod:`doc_pdf_columns` cuts a page at a candidate x into runs (the regions between two
that cross x); this module says whether one run is a *column stretch*: running text on
both sides of a gutter. What it asks, and why:

- Both sides hold text lines, :data:`MIN_SIDE_LINES` each, and the median line holds
  :data:`MIN_CHARS_PER_LINE` characters: table cells mostly hold fewer. One side may
  hold a single line (the short end of a column) when it has lines of two columns
  beside it on the page: a single line beside one line of text is more often a
  right-aligned tag, a date or a page number.
- Each side is dense: most of its lines have the next one within
  :data:`DENSE_STEP_HEIGHTS` line heights. A definition list's terms are not.
- The right side reaches the right edge of the text being cut (within
  :data:`REACH_SHARE` of its width): columns fill the text block, a borderless
  table's last column mostly ends short of it.
- The right side's text starts at x; the empty strip between lines beside each other
  is at least :data:`MIN_GUTTER_HEIGHTS` line heights and at most
  :data:`MAX_GUTTER_SHARE` of the page's text width wide.
- :data:`MIN_BESIDE` lines have a line of the other side beside them.

Before that, a first or last row standing apart from the run (a header in the top
margin) is set aside; after it, a region above the first row of lines beside each
other that is not aligned with its side and has space around it (a centred title) is
set aside too. Both are read where they stand, outside the columns.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
from collections.abc import Iterator
from dataclasses import dataclass

#: A gutter is at least this many line heights wide (a line height is about 1.17 em):
#: the narrowest gutters seen are about one em; word spaces are 0.2-0.3 line heights.
MIN_GUTTER_HEIGHTS = 0.6
#: …and at most this share of the text width: a wider gap is a short left part (a
#: label column, a form) rather than two columns of running text.
MAX_GUTTER_SHARE = 0.2
#: Each side of a column stretch holds at least this many text lines…
MIN_SIDE_LINES = 2
#: …and at least this many lines have a line of the other side beside them.
MIN_BESIDE = 3
#: Lines of running text, even in narrow newspaper columns, hold 20 characters and
#: more; most table cells hold fewer.
MIN_CHARS_PER_LINE = 12
#: A side is dense when at least this share of its lines has the next line of the side
#: within this many line heights (paragraph spacing and headings stay within it).
DENSE_SHARE = 0.5
DENSE_STEP_HEIGHTS = 2.2
#: The right side ends at most this share of the text width short of the text's right edge.
REACH_SHARE = 0.1
#: The right side's text starts at most this many line heights right of the cut: the
#: cut is placed just left of a line's start, and columns' edges line up.
EDGE_HEIGHTS = 1.0
#: A line this many line heights right of its side's left edge is not aligned with it
#: (first-line indents reach about two line heights).
ALIGN_HEIGHTS = 2.5
#: A first or last row this many line heights away from the rest of a run stands
#: apart (paragraph spacing and the space above a heading stay well under it, in both
#: columns at once)…
APART_HEIGHTS = 1.8
#: …or this many when its lines are smaller than :data:`SMALL_SHARE` of the body's:
#: page headers and footers usually are, and sit more than a paragraph space away.
SMALL_APART_HEIGHTS = 0.8
SMALL_SHARE = 0.95


@dataclass(frozen=True)
class Region:
    """A line, table or figure on a page; ``chars`` is 0 for what is not a text line."""

    x0: float
    top: float
    x1: float
    bottom: float
    chars: int = 0
    height: float = 0.0

    @property
    def middle(self) -> float:
        return (self.top + self.bottom) / 2


@dataclass(frozen=True)
class Page:
    """A page's regions and the measures the column tests are relative to."""

    regions: list[Region]
    line_height: float  # median height of the text lines
    texts: ByTop  # all text lines of the page
    width: float  # of the page's text

    @classmethod
    def of(cls, regions: list[Region]) -> Page:
        heights = sorted(r.height for r in regions if r.chars and r.height > 0)
        ids = [i for i, r in enumerate(regions) if r.chars]
        page = cls(
            regions, heights[len(heights) // 2] if heights else 12.0, ByTop(ids, regions), 0.0
        )
        left, right = page.text_block(ids)
        return dataclasses.replace(page, width=right - left)

    def text_block(self, ids: list[int]) -> tuple[float, float]:
        """Left and right edge of the text lines among ``ids``."""
        texts = [self.regions[i] for i in ids if self.regions[i].chars]
        texts = [r for r in texts if r.x1 != float("inf")]
        if not texts:
            return 0.0, 0.0
        return min(r.x0 for r in texts), max(r.x1 for r in texts)


@dataclass(frozen=True)
class Stretch:
    before: list[int]  # set aside at the top: read before the columns
    left: list[int]
    right: list[int]
    after: list[int]  # set aside at the bottom: read after the columns
    beside: int  # lines with a line of the other side beside them


def beside(a: Region, b: Region) -> bool:
    overlap = min(a.bottom, b.bottom) - max(a.top, b.top)
    return overlap > 0.3 * min(a.bottom - a.top, b.bottom - b.top)


class ByTop:
    """Regions sorted by top, to find those beside a region without looking at all."""

    def __init__(self, ids: list[int], regions: list[Region]) -> None:
        self.ids = sorted(ids, key=lambda i: regions[i].top)
        self.tops = [regions[i].top for i in self.ids]
        self.tallest = max((regions[i].bottom - regions[i].top for i in ids), default=0.0)
        self.regions = regions

    def beside(self, region: Region) -> Iterator[int]:
        k = bisect.bisect_left(self.tops, region.bottom)
        while k > 0 and self.tops[k - 1] > region.top - self.tallest:
            k -= 1
            if beside(region, self.regions[self.ids[k]]):
                yield self.ids[k]


def column_stretch(
    run: list[int], page: Page, cut: float, block: tuple[float, float]
) -> Stretch | None:
    """The run as a column stretch with its gutter at ``cut``, or None when it is not one.

    ``block`` is the left and right edge of the text being cut: the page's, or one
    side of a stretch when a third column is looked for in it.
    """
    regions, height = page.regions, page.line_height
    before, after = _apart(run, page)
    core = [i for i in run if i not in set(before + after)]
    left = [i for i in core if regions[i].x0 + regions[i].x1 < 2 * cut]
    right = [i for i in core if regions[i].x0 + regions[i].x1 >= 2 * cut]
    text_left = [i for i in left if regions[i].chars]
    text_right = [i for i in right if regions[i].chars]
    if not _sides_hold_text(text_left, text_right, page, block):
        return None
    rights, lefts = ByTop(text_right, regions), ByTop(text_left, regions)
    found = [i for i in text_left if next(rights.beside(regions[i]), None) is not None]
    found_right = [j for j in text_right if next(lefts.beside(regions[j]), None) is not None]
    found += found_right
    if len(found) < (2 if min(len(text_left), len(text_right)) == 1 else MIN_BESIDE):
        return None
    # the strip is measured between lines beside each other: a full-width paragraph's
    # short last line just above the columns may end close to the gutter
    edge = min(regions[i].x0 for i in text_right)
    gap = edge - max(regions[i].x1 for i in found[: len(found) - len(found_right)])
    if edge - cut > EDGE_HEIGHTS * height or not MIN_GUTTER_HEIGHTS * height <= gap + 1.0:
        return None
    if gap > MAX_GUTTER_SHARE * page.width:
        return None
    top_before, left, right = _set_aside_titles(left, right, found, page)
    return Stretch(before + top_before, left, right, after, len(found))


def _sides_hold_text(
    left: list[int], right: list[int], page: Page, block: tuple[float, float]
) -> bool:
    if min(len(left), len(right)) == 1:  # the short end of a column, among two others
        (single,) = left if len(left) == 1 else right
        others = [i for i in page.texts.beside(page.regions[single]) if i != single]
        return max(len(left), len(right)) >= MIN_BESIDE and len(others) >= 2
    if min(len(left), len(right)) < MIN_SIDE_LINES:
        return False
    regions = page.regions
    for side in (left, right):
        if sorted(regions[i].chars for i in side)[len(side) // 2] < MIN_CHARS_PER_LINE:
            return False
        if not _dense(side, page):
            return False
    right_end = max(regions[i].x1 for i in right)
    return right_end >= block[1] - REACH_SHARE * (block[1] - block[0])


def _dense(side: list[int], page: Page) -> bool:
    tops = sorted(page.regions[i].top for i in side)
    steps = [b - a for a, b in itertools.pairwise(tops)]
    close = sum(step <= DENSE_STEP_HEIGHTS * page.line_height for step in steps)
    return close >= DENSE_SHARE * len(steps)


def _set_aside_titles(
    left: list[int], right: list[int], found: list[int], page: Page
) -> tuple[list[int], list[int], list[int]]:
    """Regions above the first row of lines beside each other that are not aligned with
    their side and have space around them; and the sides without them.

    Below the last row nothing is set aside: there, one column running longer than the
    other is the rule, and its next paragraph's first line is indented.
    """
    regions, height = page.regions, page.line_height
    first = min(regions[i].top for i in found)
    found_set = set(found)
    aside: list[int] = []
    sides: list[list[int]] = []
    for side in (left, right):
        edges = [regions[i].x0 for i in side if i in found_set]
        edge = min(edges) if edges else None
        kept = []
        for i in side:
            r = regions[i]
            aligned = edge is None or not r.chars or abs(r.x0 - edge) <= ALIGN_HEIGHTS * height
            if not aligned and r.bottom <= first + 0.5 and _alone(i, side, page):
                aside.append(i)
            else:
                kept.append(i)
        sides.append(kept)
    return aside, sides[0], sides[1]


def _alone(i: int, side: list[int], page: Page) -> bool:
    """Whether no other region of the side is within half a line height above or below."""
    r, space = page.regions[i], 0.5 * page.line_height
    return all(
        page.regions[j].top - r.bottom > space or r.top - page.regions[j].bottom > space
        for j in side
        if j != i
    )


def _apart(ids: list[int], page: Page) -> tuple[list[int], list[int]]:
    """The first row and the last row of a run, each when it stands apart from the rest."""
    regions = page.regions
    ordered = sorted(ids, key=lambda i: regions[i].top)
    top_row = [i for i in ordered if regions[i].top < regions[ordered[0]].bottom]
    rest = [i for i in ordered if i not in top_row]
    before = top_row if rest and _stands_apart(top_row, _gap(top_row, rest, page), page) else []
    ordered = sorted(ids, key=lambda i: -regions[i].bottom)
    low = regions[ordered[0]].top
    bottom_row = [i for i in ordered if regions[i].bottom > low and i not in before]
    rest = [i for i in ordered if i not in bottom_row and i not in before]
    apart = rest and _stands_apart(bottom_row, _gap(rest, bottom_row, page), page)
    return before, bottom_row if apart else []


def _gap(upper: list[int], lower: list[int], page: Page) -> float:
    return min(page.regions[i].top for i in lower) - max(page.regions[i].bottom for i in upper)


def _stands_apart(row: list[int], gap: float, page: Page) -> bool:
    height = page.line_height
    small = all(0 < page.regions[i].height < SMALL_SHARE * height for i in row)
    return gap > (SMALL_APART_HEIGHTS if small else APART_HEIGHTS) * height
