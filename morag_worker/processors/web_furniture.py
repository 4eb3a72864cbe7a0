"""Find the page furniture that CMSs put inside an article body: newsletter sign-ups,
share bars, related-link blocks ("Related posts", "You may also like", "Read more: …")
and author bios.

Each finder returns candidate elements; none ever returns an element in ``protected``
(those that hold the title or the article body), and each bounds the size of what it
takes, so that a wrong guess costs a widget, never the article.
"""

from __future__ import annotations

from collections.abc import Callable

from lxml.html import HtmlElement

from morag_worker.processors import web_signals as sig
from morag_worker.processors.web_comments import HEADINGS, first_child, following, is_headingish

#: Most words of a newsletter box (prompt, form, small print): real ones are under 60.
NEWSLETTER_MAX_WORDS = 80
#: Most words of a share bar: a label and a handful of network names.
SHARE_MAX_WORDS = 30
#: Most words of a related-links block: five titles with one-line teasers.
RELATED_MAX_WORDS = 400
#: Most words of an author bio.
BIO_MAX_WORDS = 200
#: Most words of a byline ("By Jane Doe, Reporter · 5 min read · March 3, 2024").
BYLINE_MAX_WORDS = 15
#: Share of a block's words in links above which it is a list of links, not prose.
LINK_SHARE = 0.5

Found = Callable[[HtmlElement, set[HtmlElement], sig.WordCount], list[HtmlElement]]


def link_words(el: HtmlElement, count: sig.WordCount) -> int:
    return sum(count(a) for a in el.iter("a"))


def _climb(el: HtmlElement, protected: set[HtmlElement], count: sig.WordCount, max_words: int) -> HtmlElement:
    """The largest ancestor-or-self of ``el`` with at most ``max_words`` words."""
    best, node = el, el.getparent()
    while node is not None and node not in protected and count(node) <= max_words:
        best, node = node, node.getparent()
    return best


def _named(root: HtmlElement, protected: set[HtmlElement], count: sig.WordCount,
           test: Callable[[HtmlElement], bool], max_words: int) -> list[HtmlElement]:
    return [el for el in root.iter() if isinstance(el.tag, str) and el not in protected
            and el.tag not in ("html", "body") and test(el) and count(el) <= max_words]


def newsletters(root: HtmlElement, protected: set[HtmlElement], count: sig.WordCount) -> list[HtmlElement]:
    found = []
    for form in root.iter("form"):
        inputs = [i for i in form.iter("input") if "mail" in f"{i.get('type', '')} {i.get('name', '')}".lower()]
        if inputs and form.find(".//textarea") is None and form not in protected:
            found.append(_climb(form, protected, count, NEWSLETTER_MAX_WORDS))
    found += _named(root, protected, count, lambda el: bool(sig.name_parts(el) & sig.NEWSLETTER_WORDS),
                    NEWSLETTER_MAX_WORDS)
    return found


def _all_share_labels(el: HtmlElement, count: sig.WordCount) -> bool:
    if count(el) > SHARE_MAX_WORDS:
        return False
    tokens = sig.text_of(el).lower().replace(":", " ").replace("·", " ").split()
    controls = sum(1 for c in el.iter("a", "button"))
    return controls >= 2 and bool(tokens) and all(t in sig.SHARE_LABELS or sig.COUNT.match(t) for t in tokens)


def share_bars(root: HtmlElement, protected: set[HtmlElement], count: sig.WordCount) -> list[HtmlElement]:
    found = _named(root, protected, count, lambda el: bool(sig.name_parts(el) & sig.SHARE_WORDS), SHARE_MAX_WORDS)
    for el in root.iter():
        if isinstance(el.tag, str) and el not in protected and _all_share_labels(el, count):
            found.append(el)
    return found


def _heading_block(head: HtmlElement, protected: set[HtmlElement], count: sig.WordCount,
                   max_words: int, dense: bool) -> list[HtmlElement]:
    """The heading and what it introduces: its whole parent when the heading opens it
    and the parent is small, else the siblings after it (link lists only if ``dense``)."""
    parent = head.getparent()
    if parent is not None and parent not in protected and first_child(parent) is head:
        words = count(parent)
        if words <= max_words and (not dense or link_words(parent, count) >= 0.3 * words):
            return [parent]
    block = [head]
    for sibling in following(head):
        words = count(sibling)
        if sibling in protected or words > max_words or sibling.tag in HEADINGS:
            break
        if dense and link_words(sibling, count) < LINK_SHARE * max(words, 1):
            break
        block.append(sibling)
        if not dense:
            break
    return block if len(block) > 1 else []


def related(root: HtmlElement, protected: set[HtmlElement], count: sig.WordCount) -> list[HtmlElement]:
    def named(el: HtmlElement) -> bool:
        return bool(sig.name_parts(el) & sig.RELATED_WORDS or sig.name_pairs(el) & sig.RELATED_PAIRS)

    found = _named(root, protected, count, named, RELATED_MAX_WORDS)
    for el in root.iter():
        if not isinstance(el.tag, str) or el in protected or count(el) > 40:
            continue
        if is_headingish(el, count) and sig.RELATED_HEADING.match(sig.text_of(el)):
            found += _heading_block(el, protected, count, RELATED_MAX_WORDS, dense=True)
        elif el.tag in ("p", "div", "li") and sig.RELATED_LEAD.match(sig.text_of(el)):
            if link_words(el, count) >= 0.4 * count(el):
                found.append(el)
    return found


def bios(root: HtmlElement, protected: set[HtmlElement], count: sig.WordCount) -> list[HtmlElement]:
    def named(el: HtmlElement) -> bool:
        return bool(sig.name_pairs(el) & sig.BIO_PAIRS or sig.name_parts(el) & {"bio", "biography"})

    found = _named(root, protected, count, named, BIO_MAX_WORDS)
    for el in root.iter():
        if isinstance(el.tag, str) and el not in protected and is_headingish(el, count):
            if sig.BIO_HEADING.match(sig.text_of(el)):
                found += _heading_block(el, protected, count, BIO_MAX_WORDS, dense=False)
    return found


def bylines(root: HtmlElement, protected: set[HtmlElement], count: sig.WordCount) -> list[HtmlElement]:
    """The author/date line right after the title: metadata already carries both."""
    found = []
    for h1 in root.iter("h1"):
        for sibling in following(h1)[:2]:
            if sibling in protected or count(sibling) > BYLINE_MAX_WORDS:
                continue
            text = sig.text_of(sibling)
            dated = sibling.find(".//time") is not None or sig.DATE_TEXT.search(text)
            if dated or sig.name_parts(sibling) & sig.BYLINE_WORDS:
                found.append(sibling)
    return found


FINDERS: dict[str, Found] = {
    "byline": bylines,
    "newsletter": newsletters,
    "share": share_bars,
    "related": related,
    "bio": bios,
}
