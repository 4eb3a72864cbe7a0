"""Reader comments that a page declares in JSON-LD (schema.org ``Comment`` objects),
found back in the page by their text.

A page may quote its JSON-LD comments anywhere, and a comment may quote the article,
so an element holds a comment only when it has the comment's first words, the
commenter's name when the JSON-LD gives one, and little else.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from lxml.html import HtmlElement

from morag_worker.processors import web_signals as sig

#: Words of a JSON-LD comment matched against the page: enough to be unique, few enough
#: to survive a page that shortens long comments.
KEY_WORDS = 30
#: Words an element may hold beside a comment's text (name, date, controls): this many
#: plus half the comment's length, at most ``EXTRA_WORDS``; more is an article
#: paragraph that happens to say the same.
BASE_WORDS = 12
EXTRA_WORDS = 40
#: Prose words beside a comment's text, when the JSON-LD names no author: a name and a
#: "wrote on"; more is an article paragraph.
NAMELESS_EXTRA_PROSE = 6


@dataclass(frozen=True)
class JsonLdComment:
    key: str  #: the first ``KEY_WORDS`` words, lower case, space-joined
    size: int  #: words in the whole comment
    author: str  #: the author's name as lower-case words, "" when not given

    def fits(self, words: int) -> bool:
        return (
            min(self.size, KEY_WORDS)
            <= words
            <= self.size + min(EXTRA_WORDS, BASE_WORDS + self.size // 2)
        )

    def held_by(self, text: str) -> bool:
        """Whether ``text`` (lower-case words, space-joined) is this comment's element."""
        if self.key not in text:
            return False
        if self.author:
            return self.author in text
        return sig.prose_words(text.replace(self.key, " ")) <= NAMELESS_EXTRA_PROSE


def jsonld_comments(root: HtmlElement) -> list[JsonLdComment]:
    """Every schema.org Comment with a text of three words or more in the page's JSON-LD."""
    found: list[JsonLdComment] = []
    for script in root.iter("script"):
        if "ld+json" not in (script.get("type") or ""):
            continue
        try:
            data = json.loads(script.text or "")
        except ValueError:
            continue
        for text, author in _comments(data):
            words = sig.tokens(text)
            if len(words) >= 3:
                found.append(
                    JsonLdComment(
                        " ".join(words[:KEY_WORDS]), len(words), " ".join(sig.tokens(author))
                    )
                )
    return found


def holders(
    root: HtmlElement, comments: list[JsonLdComment], skip: set[HtmlElement], count: sig.WordCount
) -> list[HtmlElement]:
    """The smallest elements (outside ``skip``) that each hold one of ``comments``."""
    if not comments:
        return []
    found = []
    for el in root.iter():
        if not isinstance(el.tag, str) or el in skip:
            continue
        size = count(el)
        wanted = [c for c in comments if c.fits(size)]
        if wanted:
            text = " ".join(sig.tokens(sig.text_of(el)))
            if any(c.held_by(text) for c in wanted):
                found.append(el)
    held = set(found)
    return [el for el in found if not any(d in held for d in el.iterdescendants())]


def _comments(data: Any) -> Iterator[tuple[str, str]]:
    """``(text, author name)`` of each Comment object, at any depth."""
    if isinstance(data, list):
        for item in data:
            yield from _comments(item)
    elif isinstance(data, dict):
        kind = data.get("@type")
        kinds = kind if isinstance(kind, list) else [kind]
        if "Comment" in kinds and isinstance(data.get("text"), str):
            author = data.get("author")
            name = author.get("name") if isinstance(author, dict) else author
            yield data["text"], name if isinstance(name, str) else ""
        for value in data.values():
            if isinstance(value, dict | list):
                yield from _comments(value)
