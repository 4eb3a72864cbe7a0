"""Find reader comments in a parsed page.

A comment *unit* is the smallest element that carries one comment: some prose plus a
reply/like/vote control and an author or a date, counting only what is not inside a
nested unit (so a comment that holds its replies is still one unit, and each reply is
another). Sections are found four ways, each enough on its own:

- schema.org: microdata or RDFa ``Comment``/``UserComments`` items, ``itemprop=comment``,
  and JSON-LD ``Comment`` objects (matched back to the page by their text);
- names: class/id words such as ``comments``, ``comment-list``, ``disqus_thread``; weaker
  words (``discussion``, ``replies``, ``responses``) only with comment units inside;
- headings and ARIA labels ("14 responses", "Comments (3)", "Leave a reply") where
  comment units make up most of what follows them;
- structure: two or more units anywhere outside the article (repeated blocks with an
  author or date and a reply or like control, whatever their class names).

Elements in ``protected`` (those holding the title or the article body) are never
units or sections. ``web_comment_items`` reads author, date, text and reply depth
from the units of the sections found.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import lxml.html
from lxml.html import HtmlElement

from morag_worker.processors import web_signals as sig
from morag_worker.processors.web_jsonld import JsonLdComment, holders
from morag_worker.processors.web_quiet import QuietThreads
from morag_worker.processors.web_tree import (
    HEADINGS,
    first_child,
    following,
    is_headingish,
    iter_ancestors,
    outermost,
)

#: Strong class/id words: a container named so is comments whatever it holds.
STRONG_WORDS = frozenset(
    {"comment", "comments", "commentlist", "comentarios", "kommentare", "disqus", "dsq"}
)
#: Elements whose class or id never marks a comment section: a heading's id is made from
#: its text, and a page-wide class ("comments-open") sits on the body.
_NOT_NAMED = HEADINGS | {"html", "body"}
#: Share of a heading's following words that must sit in comment units for the heading
#: to mark a comment section: articles have sections called "Discussion", and a count
#: ("14 comments") also sits in bylines, before the article.
HEADING_UNIT_SHARE = 0.6
#: Most words one comment may have outside its replies: long comments run to a few
#: hundred words; an element with more is a page region that happens to hold a date and
#: a like button, not a comment.
MAX_UNIT_WORDS = 1000
#: Fewest words of prose a comment has besides its author, date and controls ("Thanks!"
#: is one; a header line of name, date and score has none).
MIN_PROSE_WORDS = 1


@dataclass
class Finder:
    """Finds the comment sections under ``root``; ``jsonld`` holds the page's JSON-LD
    comments (read before scripts are dropped)."""

    root: HtmlElement
    protected: set[HtmlElement]
    count: sig.WordCount
    jsonld: list[JsonLdComment] = field(default_factory=list)
    units: list[HtmlElement] = field(default_factory=list)
    _unit_set: set[HtmlElement] = field(default_factory=set)
    _holds_unit: set[HtmlElement] = field(default_factory=set)
    _scans: dict[HtmlElement, sig.Scan] = field(default_factory=dict)

    def run(self) -> list[HtmlElement]:
        """Every comment section or item found, outermost first in document order."""
        self._scan(self.root)
        for unit in self.units:
            self._holds_unit.update(iter_ancestors(unit, include_self=True))
        found: list[HtmlElement] = []
        found += self._schema_items()
        found += self._jsonld_items()
        found += self._named()
        if len(self.units) >= 2:
            found += self.units
        found += self._quiet_threads()
        found += self._headed()
        return outermost(found)

    def is_unit(self, el: HtmlElement) -> bool:
        return el in self._unit_set

    def _scan(self, el: HtmlElement) -> sig.Scan:
        """Post-order: the signals of ``el`` outside nested units; records units."""
        loose = [el.text or ""]
        total = sig.Scan()
        for child in el:
            loose.append(child.tail or "")
            if not isinstance(child.tag, str):
                continue
            inner = self._scan(child)
            if child in self._unit_set:
                continue
            total.action |= inner.action
            total.author |= inner.author
            total.date |= inner.date
            total.prose += inner.prose
        own = " ".join(loose)
        total.prose += sig.prose_words(own)
        if sig.words(own) <= 10 and sig.DATE_TEXT.search(own):  # "Ann wrote on 5.3.2024:"
            total.date, total.prose = True, total.prose - sig.prose_words(own)
        if total.prose <= 10 and not (total.action or total.author or total.date):
            # a small element without signals inside may be one: a name, a date, a button
            text = sig.text_of(el)
            action, author, date = (
                sig.is_action(el, text),
                sig.is_author(el, text),
                sig.is_date(el, text),
            )
            if action or author or date:
                total = sig.Scan(total.action | action, total.author | author, total.date | date, 0)
        self._scans[el] = total
        if (
            total.action
            and (total.author or total.date)
            and MIN_PROSE_WORDS <= total.prose <= MAX_UNIT_WORDS
            and el.tag not in ("html", "body", "blockquote")
            and el not in self.protected
        ):
            self.units.append(el)
            self._unit_set.add(el)
        return total

    def _quiet_threads(self) -> list[HtmlElement]:
        """Comments without controls (``web_quiet``), made units like the others."""
        items = QuietThreads(self._scans, self.count, self.protected).find(self.root)
        units = [self._as_unit(item) for item in items]  # after the search: wrapping edits
        for unit in units:
            self._holds_unit.update(iter_ancestors(unit, include_self=True))
        return units

    def _as_unit(self, item: list[HtmlElement]) -> HtmlElement:
        """One element per comment: a ``<dt>`` and its ``<dd>``s are wrapped in a ``<div>``."""
        unit = item[0]
        if len(item) > 1:
            unit = lxml.html.Element("div")
            item[0].addprevious(unit)
            unit.extend(item)
        self._unit_set.add(unit)
        return unit

    def _schema_items(self) -> list[HtmlElement]:
        return [
            el
            for el in self.root.iter()
            if isinstance(el.tag, str) and sig.is_schema_comment(el) and el not in self.protected
        ]

    def _jsonld_items(self) -> list[HtmlElement]:
        return [
            self._unit_above(el)
            for el in holders(self.root, self.jsonld, self.protected, self.count)
        ]

    def _unit_above(self, el: HtmlElement) -> HtmlElement:
        """The comment unit holding ``el``, else ``el`` itself."""
        for node in iter_ancestors(el, include_self=True):
            if node in self._unit_set:
                return node
        return el

    def _named(self) -> list[HtmlElement]:
        found = []
        for el in self.root.iter():
            if not isinstance(el.tag, str) or el in self.protected or el.tag in _NOT_NAMED:
                continue  # a heading's id is made from its text: "comments" there says nothing
            parts = sig.name_parts(el)
            strong = bool(parts & STRONG_WORDS) or el.get("id", "").startswith(("disqus", "dsq"))
            weak = bool(parts & sig.COMMENT_WORDS) or bool(sig.COMMENT_HEADING.match(sig.label(el)))
            if strong or (weak and (self._has_unit(el) or el.find(".//textarea") is not None)):
                found.append(el)
        return found

    def _has_unit(self, el: HtmlElement) -> bool:
        return el in self._holds_unit

    def _headed(self) -> list[HtmlElement]:
        found: list[HtmlElement] = []
        for head in self.root.iter():
            if (
                not isinstance(head.tag, str)
                or head in self.protected
                or not is_headingish(head, self.count)
            ):
                continue
            if not sig.COMMENT_HEADING.match(sig.text_of(head)):
                continue
            region = following(head)
            if not region and head.getparent() is not None:
                region = following(head.getparent())
            if self._verified(region):
                parent = head.getparent()
                if (
                    parent is not None
                    and parent not in self.protected
                    and first_child(parent) is head
                ):
                    found.append(parent)
                    found += [r for r in region if r.getparent() is not parent]
                else:
                    found += [head, *region]
        return [el for el in found if el not in self.protected]

    def _verified(self, region: list[HtmlElement]) -> bool:
        """Whether comment units hold most of what follows a comments heading (an
        article section called "Discussion" is prose, not units)."""
        region = [r for r in region if r not in self.protected]
        total = sum(self.count(r) for r in region)
        in_units = sum(self.count(u) for r in region for u in outermost(self._units_in(r)))
        return total > 0 and in_units >= HEADING_UNIT_SHARE * total

    def _units_in(self, el: HtmlElement) -> list[HtmlElement]:
        if el not in self._holds_unit:
            return []
        return [u for u in el.iter() if u in self._unit_set]
