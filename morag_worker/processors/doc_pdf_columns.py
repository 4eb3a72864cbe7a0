"""Reading order of a PDF page: columns found from the geometry of its lines.

A page reads as a sequence of horizontal stretches: full-width ones (a title, an
abstract, a figure or a table across the page) top to bottom, and multi-column ones
column by column. Between two columns runs a *gutter*: a vertical strip that no line
crosses, with text on both sides of it, row after row.

The order is found recursively, like an XY cut that only cuts where columns are:

1. Candidate gutters: the left edge of every line that has another line on its row
   to its left, at least :data:`MIN_GUTTER_HEIGHTS` line heights away.
2. For a candidate x, the regions that cross x cut the page into runs. A run is a
   *column stretch* when both sides hold text lines (:data:`MIN_SIDE_LINES` each,
   :data:`MIN_TWO_SIDED` of them beside a line on the other side), the empty strip
   between the sides is no wider than :data:`MAX_GUTTER_SHARE` of the text width
   and the right side's text starts at x (where another column's line crosses x, the
   run between two such lines is no stretch),
   and the median line on each side holds :data:`MIN_CHARS_PER_LINE` characters (a
   borderless table's cells mostly do not, so a table is read row by row).
3. The candidate with the most lines beside each other wins. Each column stretch is
   read left side, then right side, each side ordered again (a third column is found
   within the right side); what lies between stretches (full-width lines, figures,
   runs that are no column stretch) is ordered again as one flow.
4. Where no gutter is left, regions are read in rows: top to bottom, left to right.

A title centred over the page sits above the first row of a stretch without being
aligned with a column's left edge, set apart by some space; such a region is taken
out of the stretch and read where it stands. So is a first or last row that
stands :data:`APART_HEIGHTS` line heights apart from the rest (a header that is no
running header, as on a document's only other page).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass

#: A gutter is at least this many line heights wide (a line height is about 1.17 em):
#: the narrowest gutters seen are about one em; word spaces are 0.2-0.3 line heights.
MIN_GUTTER_HEIGHTS = 0.6
#: …and at most this share of the text width; a wider gap is a page with a short
#: left part (a label column, a form) rather than two columns of running text.
MAX_GUTTER_SHARE = 0.2
#: Each side of a column stretch holds at least this many text lines…
MIN_SIDE_LINES = 2
#: …and at least this many lines have a line of the other side beside them.
MIN_TWO_SIDED = 3
#: Lines of running text, even in narrow newspaper columns, hold 20 characters and
#: more; most table cells hold fewer.
MIN_CHARS_PER_LINE = 12
#: A line this many line heights right of its side's left edge is not aligned with it
#: (first-line indents reach about two line heights).
ALIGN_HEIGHTS = 2.5
#: A first or last row this many line heights away from the rest of a stretch stands
#: apart from it (a header in the top margin); paragraph spacing and the space above
#: a heading stay well under it in both columns at once.
APART_HEIGHTS = 1.8
#: …or this many when its lines are smaller than this share of the body's: page
#: headers and footers usually are, and sit more than a paragraph space away.
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
class _Stretch:
    before: list[int]  # taken out at the top: read before the columns
    left: list[int]
    right: list[int]
    after: list[int]  # taken out at the bottom: read after the columns
    beside: int  # lines with a line of the other side beside them


def reading_order(regions: list[Region]) -> list[list[int]]:
    """Indexes of ``regions`` in reading order, grouped in flows.

    A flow is one column of one stretch, or a full-width stretch; the caller may treat
    a change of flow as a column break.
    """
    heights = sorted(r.height for r in regions if r.chars and r.height > 0)
    line_height = heights[len(heights) // 2] if heights else 12.0
    return [flow for flow in _order(list(range(len(regions))), regions, line_height) if flow]


def _order(ids: list[int], regions: list[Region], line_height: float) -> list[list[int]]:
    cut = _best_cut(ids, regions, line_height)
    if cut is None:
        return [_rows(ids, regions)]
    flows: list[list[int]] = []
    pending: list[int] = []
    for run in _runs(ids, regions, cut):
        stretch = _stretch(run, regions, cut, line_height)
        if stretch is None:
            pending += run
            continue
        pending += stretch.before
        if pending:
            flows += _order(pending, regions, line_height)
        flows += _order(stretch.left, regions, line_height)
        flows += _order(stretch.right, regions, line_height)
        pending = list(stretch.after)
    if pending:
        flows += _order(pending, regions, line_height)
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


def _beside(a: Region, b: Region) -> bool:
    overlap = min(a.bottom, b.bottom) - max(a.top, b.top)
    return overlap > 0.3 * min(a.bottom - a.top, b.bottom - b.top)


def _crosses(region: Region, cut: float) -> bool:
    return region.x0 < cut - 0.5 and region.x1 > cut + 0.5


class _ByTop:
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
            if _beside(region, self.regions[self.ids[k]]):
                yield self.ids[k]


def _candidates(ids: list[int], regions: list[Region], line_height: float) -> list[float]:
    """x positions just left of lines that have, on their row, a line far to their left."""
    gap_min = MIN_GUTTER_HEIGHTS * line_height
    texts = _ByTop([i for i in ids if regions[i].chars], regions)
    found: set[float] = set()
    for i in texts.ids:
        r = regions[i]
        lefts = [regions[j].x1 for j in texts.beside(r) if j != i and regions[j].x1 <= r.x0 + 0.5]
        if lefts and r.x0 - max(lefts) >= gap_min:
            found.add(round(r.x0 - min((r.x0 - max(lefts)) / 2, 0.3 * line_height)))
    return sorted(found)


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


def _stretch(run: list[int], regions: list[Region], cut: float, line_height: float) -> _Stretch | None:
    """The run as a column stretch at ``cut``, or None when it is not one."""
    before, after = _apart(run, regions, line_height)
    apart = set(before + after)
    core = [i for i in run if i not in apart]
    left = [i for i in core if regions[i].x0 + regions[i].x1 < 2 * cut]
    right = [i for i in core if regions[i].x0 + regions[i].x1 >= 2 * cut]
    text_left = [i for i in left if regions[i].chars]
    text_right = [i for i in right if regions[i].chars]
    if not _sides_hold_text(text_left, text_right, regions):
        return None
    edge = min(regions[i].x0 for i in text_right)
    if edge - cut > ALIGN_HEIGHTS * line_height:  # the right side starts elsewhere: no gutter here
        return None
    gap = edge - max(regions[i].x1 for i in text_left)
    width = max(regions[i].x1 for i in run) - min(regions[i].x0 for i in run)
    if not MIN_GUTTER_HEIGHTS * line_height <= gap + 1.0 or gap > MAX_GUTTER_SHARE * width:
        return None
    rights, lefts = _ByTop(text_right, regions), _ByTop(text_left, regions)
    beside = [i for i in text_left if next(rights.beside(regions[i]), None) is not None]
    beside += [j for j in text_right if next(lefts.beside(regions[j]), None) is not None]
    if len(beside) < (2 if min(len(text_left), len(text_right)) == 1 else MIN_TWO_SIDED):
        return None
    stretch = _trim(left, right, beside, regions, line_height)
    return _Stretch(before + stretch.before, stretch.left, stretch.right, stretch.after + after, stretch.beside)


def _sides_hold_text(left: list[int], right: list[int], regions: list[Region]) -> bool:
    """Both sides hold running text: :data:`MIN_SIDE_LINES` lines each whose median
    is not table-cell short; or one side holds a single line (the short end of a
    column) beside a side of :data:`MIN_TWO_SIDED` lines or more."""
    if min(len(left), len(right)) == 1:
        return max(len(left), len(right)) >= MIN_TWO_SIDED
    if min(len(left), len(right)) < MIN_SIDE_LINES:
        return False
    return all(
        sorted(regions[i].chars for i in side)[len(side) // 2] >= MIN_CHARS_PER_LINE
        for side in (left, right)
    )


def _trim(
    left: list[int], right: list[int], beside: list[int], regions: list[Region], line_height: float
) -> _Stretch:
    """Take out unaligned regions above the first row of lines beside each other.

    Below the last row nothing is taken out: there, one column running longer than
    the other is the rule, and its next paragraph's first line is indented.
    """
    first = min(regions[i].top for i in beside)
    before: list[int] = []
    sides: list[list[int]] = []
    beside_set = set(beside)
    for side in (left, right):
        edges = [regions[i].x0 for i in side if i in beside_set]
        edge = min(edges) if edges else None
        kept = []
        for i in side:
            r = regions[i]
            aligned = edge is None or not r.chars or abs(r.x0 - edge) <= ALIGN_HEIGHTS * line_height
            if not aligned and r.bottom <= first + 0.5 and _alone(i, side, regions, line_height):
                before.append(i)
            else:
                kept.append(i)
        sides.append(kept)
    return _Stretch(before, sides[0], sides[1], [], len(beside))


def _alone(i: int, side: list[int], regions: list[Region], line_height: float) -> bool:
    """Whether no other region of the side is within half a line height above or below."""
    r = regions[i]
    return all(
        regions[j].top - r.bottom > 0.5 * line_height or r.top - regions[j].bottom > 0.5 * line_height
        for j in side
        if j != i
    )


def _apart(ids: list[int], regions: list[Region], line_height: float) -> tuple[list[int], list[int]]:
    """The first row and the last row, each when it stands apart from the rest."""
    ordered = sorted(ids, key=lambda i: regions[i].top)
    top_row = [i for i in ordered if regions[i].top < regions[ordered[0]].bottom]
    rest = [i for i in ordered if i not in top_row]
    before = top_row if rest and _stands_apart(top_row, _gap(top_row, rest, regions), regions, line_height) else []
    ordered = sorted(ids, key=lambda i: -regions[i].bottom)
    bottom_row = [i for i in ordered if regions[i].bottom > regions[ordered[0]].top and i not in before]
    rest = [i for i in ordered if i not in bottom_row and i not in before]
    after = bottom_row if rest and _stands_apart(bottom_row, _gap(rest, bottom_row, regions), regions, line_height) else []
    return before, after


def _stands_apart(row: list[int], gap: float, regions: list[Region], line_height: float) -> bool:
    """A row :data:`APART_HEIGHTS` line heights away; or, when set smaller than the
    body (as headers and footers are), :data:`SMALL_APART_HEIGHTS` away."""
    small = all(0 < regions[i].height < SMALL_SHARE * line_height for i in row)
    return gap > (SMALL_APART_HEIGHTS if small else APART_HEIGHTS) * line_height


def _gap(upper: list[int], lower: list[int], regions: list[Region]) -> float:
    return min(regions[i].top for i in lower) - max(regions[i].bottom for i in upper)


def _best_cut(ids: list[int], regions: list[Region], line_height: float) -> float | None:
    best, best_beside = None, 0
    for cut in _candidates(ids, regions, line_height):
        beside = 0
        for run in _runs(ids, regions, cut):
            stretch = _stretch(run, regions, cut, line_height)
            if stretch is not None:
                beside += stretch.beside
        if beside > best_beside:
            best, best_beside = cut, beside
    return best
