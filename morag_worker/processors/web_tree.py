"""Small questions about an lxml tree that the web cleaning modules share: ancestors,
siblings, which elements are outermost, what counts as a heading."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from lxml.html import HtmlElement

from morag_worker.processors.web_signals import WordCount

HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
#: Elements that stand in for a heading when short ("<b>See also</b>", "<div>14 replies</div>").
_HEADING_STANDINS = frozenset({"div", "span", "p", "strong", "b", "header", "legend", "summary"})
_BLOCKS = frozenset({"div", "p", "ul", "ol", "section"})
#: Most words of a stand-in heading.
HEADING_MAX_WORDS = 8
#: Elements whose words are the text of a page (for the text region).
TEXT_ELEMENTS = frozenset(
    {"p", "li", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote", "td", "dd"}
)
#: Share of the page's text that the text region holds: all of the article, allowing a
#: stray list or table cell elsewhere.
TEXT_REGION_SHARE = 0.9


def text_region(root: HtmlElement, count: WordCount) -> HtmlElement:
    """The deepest element that holds ``TEXT_REGION_SHARE`` of the words in the page's
    paragraphs, headings, list items and cells."""
    totals: dict[HtmlElement, int] = {}

    def visit(el: HtmlElement) -> int:
        if el.tag in TEXT_ELEMENTS:
            n = count(el)
        else:
            n = sum(visit(c) for c in el if isinstance(c.tag, str))
        totals[el] = n
        return n

    wanted = TEXT_REGION_SHARE * visit(root)
    node = root
    while True:
        if node.tag in TEXT_ELEMENTS:
            return node
        inner = next((c for c in node if isinstance(c.tag, str) and totals[c] >= wanted), None)
        if inner is None:
            return node
        node = inner


def is_headingish(el: HtmlElement, count: WordCount) -> bool:
    """A heading element, or a short block of text without blocks inside."""
    if el.tag in HEADINGS:
        return True
    if el.tag not in _HEADING_STANDINS:
        return False
    return count(el) <= HEADING_MAX_WORDS and not any(
        isinstance(c.tag, str) and c.tag in _BLOCKS for c in el
    )


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
    """The element siblings after ``el``."""
    return [s for s in el.itersiblings() if isinstance(s.tag, str)]


def previous_element(el: HtmlElement) -> HtmlElement | None:
    """The element sibling before ``el``, skipping comments and processing instructions."""
    node = el.getprevious()
    while node is not None and not isinstance(node.tag, str):
        node = node.getprevious()
    return node


def first_child(el: HtmlElement) -> HtmlElement | None:
    for child in el:
        if isinstance(child.tag, str):
            return child
    return None


def alike(a: HtmlElement, b: HtmlElement) -> bool:
    """Two items of one list: the same tag and a class in common (or neither has one)."""
    if a.tag != b.tag:
        return False
    ca, cb = set(a.get("class", "").split()), set(b.get("class", "").split())
    return bool(ca & cb) or not (ca or cb)
