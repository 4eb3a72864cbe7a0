"""Find reader comments in a parsed page.

A comment *unit* is the smallest element that carries one comment: some prose plus a
reply/like/vote control and an author or a date, counting only what is not inside a
nested unit (so a comment that holds its replies is still one unit, and each reply is
another). Sections are found four ways, each enough on its own:

- schema.org: microdata or RDFa ``Comment``/``UserComments`` items, ``itemprop=comment``,
  and JSON-LD ``Comment`` objects (matched back to the page by their text);
- names: class/id words such as ``comments``, ``comment-list``, ``disqus_thread``; weaker
  words (``discussion``, ``replies``, ``responses``) only with comment units inside;
- headings and ARIA labels ("14 responses", "Comments (3)", "Leave a reply"); a heading
  without a count only where comment units make up most of what follows it;
- structure: two or more units anywhere outside the article (repeated blocks with an
  author or date and a reply or like control, whatever their class names).

Elements in ``protected`` (those holding the title or the article body) are never
units or sections. :func:`comment_items` reads author, date, text and reply depth
from the units of the sections found.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from lxml.html import HtmlElement

from morag_worker.processors import web_signals as sig

#: Strong class/id words: a container named so is comments whatever it holds.
STRONG_WORDS = frozenset({"comment", "comments", "commentlist", "comentarios", "kommentare", "disqus", "dsq"})
#: Share of a heading's following words that must sit in comment units for a heading
#: without a count ("Discussion") to mark a comment section: articles have sections
#: called that, and they are prose, not units.
HEADING_UNIT_SHARE = 0.6
#: Most words one comment may have outside its replies: long comments run to a few
#: hundred words; an element with more is a page region that happens to hold a date and
#: a like button, not a comment.
MAX_UNIT_WORDS = 1000
#: Fewest words of prose a comment has besides its author, date and controls ("Thanks!"
#: is one; a header line of name, date and score has none).
MIN_PROSE_WORDS = 1


@dataclass
class Scan:
    """Signals of one element, not counting nested units; ``prose`` counts the words
    outside author, date and control elements."""

    action: bool = False
    author: bool = False
    date: bool = False
    prose: int = 0


@dataclass
class Finder:
    """Finds the comment sections under ``root``; ``jsonld`` holds the texts of the
    page's JSON-LD comments (read before scripts are dropped)."""

    root: HtmlElement
    protected: set[HtmlElement]
    count: sig.WordCount
    jsonld: list[str] = field(default_factory=list)
    units: list[HtmlElement] = field(default_factory=list)
    _unit_set: set[HtmlElement] = field(default_factory=set)
    _holds_unit: set[HtmlElement] = field(default_factory=set)

    def run(self) -> list[HtmlElement]:
        """Every comment section or item found, outermost first in document order."""
        self._scan(self.root)
        for unit in self.units:
            self._holds_unit.update(iter_ancestors(unit, include_self=True))
        found: list[HtmlElement] = []
        found += self._schema_items()
        found += self._jsonld_items()
        found += self._named()
        found += self._headed()
        if len(self.units) >= 2:
            found += self.units
        return outermost(found)

    def is_unit(self, el: HtmlElement) -> bool:
        return el in self._unit_set

    def _scan(self, el: HtmlElement) -> Scan:
        """Post-order: the signals of ``el`` outside nested units; records units."""
        total = Scan(prose=sig.prose_words(el.text or ""))
        for child in el:
            if not isinstance(child.tag, str):
                continue
            total.prose += sig.prose_words(child.tail or "")
            inner = self._scan(child)
            if child in self._unit_set:
                continue
            total.action |= inner.action
            total.author |= inner.author
            total.date |= inner.date
            total.prose += inner.prose
        if total.prose <= 10 and not (total.action or total.author or total.date):
            # a small element without signals inside may be one: a name, a date, a button
            text = sig.text_of(el)
            action, author, date = sig.is_action(el, text), sig.is_author(el, text), sig.is_date(el, text)
            if action or author or date:
                total = Scan(total.action | action, total.author | author, total.date | date, 0)
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

    def _schema_items(self) -> list[HtmlElement]:
        return [el for el in self.root.iter() if isinstance(el.tag, str) and sig.is_schema_comment(el)
                and el not in self.protected]

    def _jsonld_items(self) -> list[HtmlElement]:
        texts = [t for t in self.jsonld if sig.words(t) >= 3]
        if not texts:
            return []
        found = []
        for el in self.root.iter():
            if not isinstance(el.tag, str) or el.tag in ("script", "style") or el in self.protected:
                continue
            own = " ".join(" ".join(el.itertext()).split())
            if any(t[:80] in own for t in texts) and not any(
                t[:80] in " ".join(" ".join(c.itertext()).split()) for c in el for t in texts
            ):
                found.append(self._unit_above(el) or el)
        return found

    def _unit_above(self, el: HtmlElement) -> HtmlElement | None:
        for node in iter_ancestors(el, include_self=True):
            if node in self._unit_set:
                return node
        return None

    def _named(self) -> list[HtmlElement]:
        found = []
        for el in self.root.iter():
            if not isinstance(el.tag, str) or el in self.protected or el.tag in HEADINGS:
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
            if not isinstance(head.tag, str) or head in self.protected or not is_headingish(head, self.count):
                continue
            text = sig.text_of(head)
            if not sig.COMMENT_HEADING.match(text):
                continue
            region = following(head)
            if not region and head.getparent() is not None:
                region = following(head.getparent())
            if self._verified(text, region):
                parent = head.getparent()
                if parent is not None and parent not in self.protected and first_child(parent) is head:
                    found.append(parent)
                    found += [r for r in region if r.getparent() is not parent]
                else:
                    found += [head, *region]
        return [el for el in found if el not in self.protected]

    def _verified(self, heading: str, region: list[HtmlElement]) -> bool:
        if any(r in self.protected for r in region):
            region = [r for r in region if r not in self.protected]
        if sig.COUNTED_HEADING.search(heading) and region:
            return any(self._has_unit(r) or r.find(".//textarea") is not None for r in region)
        total = sum(self.count(r) for r in region)
        in_units = sum(self.count(u) for r in region for u in outermost(self._units_in(r)))
        return total > 0 and in_units >= HEADING_UNIT_SHARE * total

    def _units_in(self, el: HtmlElement) -> list[HtmlElement]:
        if el not in self._holds_unit:
            return []
        return [u for u in el.iter() if u in self._unit_set]


HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})


def is_headingish(el: HtmlElement, count: sig.WordCount) -> bool:
    """A heading element, or a short block of text that stands in for one."""
    if el.tag in HEADINGS:
        return True
    if el.tag not in ("div", "span", "p", "strong", "b", "header", "legend", "summary"):
        return False
    return count(el) <= 8 and not any(
        isinstance(c.tag, str) and c.tag in ("div", "p", "ul", "ol", "section") for c in el
    )


def jsonld_comment_texts(root: HtmlElement) -> list[str]:
    """The ``text`` of every schema.org Comment in the page's JSON-LD blocks."""
    texts: list[str] = []
    for script in root.iter("script"):
        if "ld+json" not in (script.get("type") or ""):
            continue
        try:
            data = json.loads(script.text or "")
        except ValueError:
            continue
        texts.extend(_comment_texts(data))
    return [" ".join(t.split()) for t in texts]


def _comment_texts(data: Any) -> Iterator[str]:
    if isinstance(data, list):
        for item in data:
            yield from _comment_texts(item)
    elif isinstance(data, dict):
        kind = data.get("@type")
        kinds = kind if isinstance(kind, list) else [kind]
        if "Comment" in kinds and isinstance(data.get("text"), str):
            yield data["text"]
        for value in data.values():
            if isinstance(value, dict | list):
                yield from _comment_texts(value)


def iter_ancestors(el: HtmlElement, include_self: bool = False) -> Iterator[HtmlElement]:
    node = el if include_self else el.getparent()
    while node is not None:
        yield node
        node = node.getparent()


def outermost(elements: Iterable[HtmlElement]) -> list[HtmlElement]:
    """``elements`` without those inside another, in document order, each once."""
    chosen = set(elements)
    keep = [el for el in chosen if not any(a in chosen for a in iter_ancestors(el))]
    order = {el: i for i, el in enumerate(keep[0].getroottree().iter())} if keep else {}
    return sorted(keep, key=lambda el: order.get(el, 0))


def following(el: HtmlElement) -> list[HtmlElement]:
    return [s for s in el.itersiblings() if isinstance(s.tag, str)]


def first_child(el: HtmlElement) -> HtmlElement | None:
    for child in el:
        if isinstance(child.tag, str):
            return child
    return None
