"""Find the page furniture that CMSs put inside an article body: the byline, newsletter
sign-ups, share bars, related-link blocks ("Related posts", "You may also like",
"Read more: …") and author bios.

Each finder returns candidate elements; none ever returns an element in ``protected``
(those that hold the title or the article body), and each bounds the size of what it
takes, so that a wrong guess costs a widget, never the article.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lxml.html import HtmlElement

from morag_worker.processors import web_signals as sig
from morag_worker.processors.web_tree import (
    HEADINGS,
    first_child,
    following,
    is_headingish,
    previous_element,
)

#: Most words of a newsletter box (prompt, form, small print): real ones are under 60.
NEWSLETTER_MAX_WORDS = 80
#: Most words of a share bar: a label and a handful of network names.
SHARE_MAX_WORDS = 30
#: Most words of a related-links block: five titles with one-line teasers.
RELATED_MAX_WORDS = 400
#: Most words of a paragraph of links led by "Read more:" or "See also:".
RELATED_LEAD_MAX_WORDS = 120
#: Most words of an author bio.
BIO_MAX_WORDS = 200
#: Most words of a byline ("By Jane Doe, Reporter · 5 min read · March 3, 2024").
BYLINE_MAX_WORDS = 15
#: Share of a block's words in links above which it is a list of links, not prose.
LINK_SHARE = 0.5
#: The same for a whole related block that opens with its heading (teasers included).
RELATED_BOX_LINK_SHARE = 0.3
#: The same for a paragraph led by "Read more:".
RELATED_LEAD_LINK_SHARE = 0.4


@dataclass
class Furniture:
    """The furniture finders over one parsed page."""

    root: HtmlElement
    protected: set[HtmlElement]
    count: sig.WordCount

    def find(self) -> dict[str, list[HtmlElement]]:
        """Candidates by kind: byline, newsletter, share, related, bio."""
        return {
            "byline": self.bylines(),
            "newsletter": self.newsletters(),
            "share": self.share_bars(),
            "related": self.related(),
            "bio": self.bios(),
        }

    def _elements(self) -> list[HtmlElement]:
        return [
            el for el in self.root.iter() if isinstance(el.tag, str) and el not in self.protected
        ]

    def _named(self, test: Callable[[HtmlElement], bool], max_words: int) -> list[HtmlElement]:
        return [
            el
            for el in self._elements()
            if el.tag not in ("html", "body") and test(el) and self.count(el) <= max_words
        ]

    def _climb(self, el: HtmlElement, max_words: int) -> HtmlElement:
        """The largest ancestor-or-self of ``el`` with at most ``max_words`` words."""
        best, node = el, el.getparent()
        while node is not None and node not in self.protected and self.count(node) <= max_words:
            best, node = node, node.getparent()
        return best

    def _links(self, el: HtmlElement) -> int:
        return sum(self.count(a) for a in el.iter("a"))

    def bylines(self) -> list[HtmlElement]:
        """The author/date line right after the title: metadata already carries both."""
        found = []
        titles = list(self.root.iter("h1")) or list(self.root.iter("h2"))[:1]
        for title in titles:
            for line in following(title)[:2]:
                if line in self.protected or self.count(line) > BYLINE_MAX_WORDS:
                    continue
                dated = line.find(".//time") is not None or sig.DATE_TEXT.search(sig.text_of(line))
                if dated or sig.name_parts(line) & sig.BYLINE_WORDS:
                    found.append(line)
        return found

    def newsletters(self) -> list[HtmlElement]:
        """Sign-up forms (an email field, no text area) with their box, the prompt just
        before a bare form, and boxes named like newsletters."""
        found = []
        for form in self.root.iter("form"):
            fields = [
                f"{i.get('type', '')} {i.get('name', '')}".lower() for i in form.iter("input")
            ]
            if form in self.protected or form.find(".//textarea") is not None:
                continue
            if any("mail" in f for f in fields):
                box = self._climb(form, NEWSLETTER_MAX_WORDS)
                found.append(box)
                prompt = previous_element(box)
                if prompt is not None and self._newsletter_prompt(prompt):
                    found.append(prompt)
        found += self._named(
            lambda el: bool(sig.name_parts(el) & sig.NEWSLETTER_WORDS), NEWSLETTER_MAX_WORDS
        )
        return found

    def _newsletter_prompt(self, el: HtmlElement) -> bool:
        if el in self.protected or self.count(el) > NEWSLETTER_MAX_WORDS:
            return False
        return bool(sig.NEWSLETTER_TEXT.search(sig.text_of(el)))

    def share_bars(self) -> list[HtmlElement]:
        """Boxes named like share bars, and groups of controls that only say "Share",
        "Facebook", "Email", counts and the like."""
        found = self._named(lambda el: bool(sig.name_parts(el) & sig.SHARE_WORDS), SHARE_MAX_WORDS)
        return found + [el for el in self._elements() if self._only_controls(el)]

    def _only_controls(self, el: HtmlElement) -> bool:
        if self.count(el) > SHARE_MAX_WORDS or sum(1 for _ in el.iter("a", "button")) < 2:
            return False
        tokens = sig.text_of(el).lower().replace(":", " ").replace("·", " ").split()
        return bool(tokens) and all(t in sig.SHARE_LABELS or sig.COUNT.match(t) for t in tokens)

    def related(self) -> list[HtmlElement]:
        """Boxes named like related links, link lists under a "Related posts"-style
        heading, and "Read more: …" paragraphs of links."""

        def named(el: HtmlElement) -> bool:
            return bool(
                sig.name_parts(el) & sig.RELATED_WORDS or sig.name_pairs(el) & sig.RELATED_PAIRS
            )

        found = self._named(named, RELATED_MAX_WORDS)
        for el in self._elements():
            if self.count(el) > RELATED_LEAD_MAX_WORDS:
                continue
            text = sig.text_of(el)
            if is_headingish(el, self.count) and sig.RELATED_HEADING.match(text):
                found += self._heading_block(el, RELATED_MAX_WORDS, dense=True)
            elif (
                el.tag in ("p", "div", "li")
                and sig.RELATED_LEAD.match(text)
                and self._link_list(el)
            ):
                found.append(el)
        return found

    def _link_list(self, el: HtmlElement) -> bool:
        return self._links(el) >= RELATED_LEAD_LINK_SHARE * self.count(el)

    def bios(self) -> list[HtmlElement]:
        """Boxes named like author bios, and what an "About the author" heading opens."""

        def named(el: HtmlElement) -> bool:
            return bool(sig.name_pairs(el) & sig.BIO_PAIRS or sig.name_parts(el) & sig.BIO_WORDS)

        found = self._named(named, BIO_MAX_WORDS)
        for el in self._elements():
            if is_headingish(el, self.count) and sig.BIO_HEADING.match(sig.text_of(el)):
                found += self._heading_block(el, BIO_MAX_WORDS, dense=False)
        return found

    def _heading_block(self, head: HtmlElement, max_words: int, dense: bool) -> list[HtmlElement]:
        """The heading and what it introduces: its whole parent when the heading opens it
        and the parent is small, else the siblings after it (while they are link lists,
        if ``dense``; else the one block after it)."""
        parent = head.getparent()
        if parent is not None and parent not in self.protected and first_child(parent) is head:
            words = self.count(parent)
            if words <= max_words and (
                not dense or self._links(parent) >= RELATED_BOX_LINK_SHARE * words
            ):
                return [parent]
        block = [head]
        for sibling in following(head):
            words = self.count(sibling)
            if sibling in self.protected or words > max_words or sibling.tag in HEADINGS:
                break
            if dense and self._links(sibling) < LINK_SHARE * max(words, 1):
                break
            block.append(sibling)
            if not dense:
                break
        return block if len(block) > 1 else []
