"""Reader comments without controls: no reply link, no like button, only a name, a date
and the text, as old themes, guestbooks and Blogger print them.

Without controls, a block with a name and a date could be many things (a teaser, a
dated list item), so these comments are recognised only as a group: two or more alike
items, each with its name and date in short parts of their own and prose in the rest,
that make up nearly all of their container, or that follow a comments heading inside
the article's own container. Replies nested in such a comment, alike to it, count too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from lxml.html import HtmlElement

from morag_worker.processors import web_signals as sig
from morag_worker.processors.web_tree import alike, is_headingish, previous_element

#: Share of a container's words that such comments must hold for the container to be a
#: comment list (a heading and a "write one" link may remain).
QUIET_SHARE = 0.8
#: Most words of a part that carries a name or a date (a line: name, date, a count).
QUIET_HEADER_WORDS = 20
#: Fewest words of prose beside the name and date: a list of dated names is not comments.
QUIET_PROSE_WORDS = 3


@dataclass
class QuietThreads:
    """Finds comments without controls from the signals ``web_comments`` scanned."""

    scans: Mapping[HtmlElement, sig.Scan]
    count: sig.WordCount
    protected: set[HtmlElement]

    def find(self, root: HtmlElement) -> list[list[HtmlElement]]:
        """Each comment as the list of elements that make it up (one element, or a
        ``<dt>`` with its ``<dd>``s)."""
        found: list[list[HtmlElement]] = []
        for box in root.iter():
            if isinstance(box.tag, str):
                found += self._run(box, self._items(box))
        for item in list(found):
            if len(item) == 1:
                found += [[d] for d in item[0].iterdescendants() if self._reply(d, item[0])]
        return found

    def _items(self, box: HtmlElement) -> list[list[HtmlElement]]:
        kids = [c for c in box if isinstance(c.tag, str) and c not in self.protected]
        if box.tag != "dl":
            return [[k] for k in kids]
        groups: list[list[HtmlElement]] = []  # a <dt> and the <dd>s after it
        for kid in kids:
            if kid.tag == "dt" or not groups:
                groups.append([kid])
            else:
                groups[-1].append(kid)
        return groups

    def _run(self, box: HtmlElement, items: list[list[HtmlElement]]) -> list[list[HtmlElement]]:
        signed = [item for item in items if self._signed(item)]
        if len(signed) < 2 or not all(alike(signed[0][0], item[0]) for item in signed):
            return []
        if box not in self.protected:
            words = sum(self.count(el) for item in signed for el in item)
            return signed if words >= QUIET_SHARE * self.count(box) else []
        heading = previous_element(signed[0][0])
        if heading is None or not is_headingish(heading, self.count):
            return []
        if not sig.COMMENT_HEADING.match(sig.text_of(heading)):
            return []
        run = []
        for item in items[items.index(signed[0]) :]:
            if item not in signed:
                break
            run.append(item)
        return run if len(run) >= 2 else []

    def _reply(self, el: HtmlElement, comment: HtmlElement) -> bool:
        return isinstance(el.tag, str) and alike(el, comment) and self._signed([el])

    def _signed(self, item: list[HtmlElement]) -> bool:
        """Short parts that carry an author and a date, and prose in the other parts."""
        parts = item if len(item) > 1 else [c for c in item[0] if isinstance(c.tag, str)]
        if len(parts) < 2 or any(p not in self.scans for p in parts):
            return False
        meta = [
            p
            for p in parts
            if (self.scans[p].author or self.scans[p].date) and self.count(p) <= QUIET_HEADER_WORDS
        ]
        prose = sum(self.scans[p].prose for p in parts if p not in meta)
        return (
            any(self.scans[p].author for p in meta)
            and any(self.scans[p].date for p in meta)
            and prose >= QUIET_PROSE_WORDS
        )
