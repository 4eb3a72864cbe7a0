"""What page furniture looks like: the names, headings and small elements that mark reader
comments, related links, newsletter forms, share bars and author bios.

Everything here answers a question about one lxml element (its class and id words, its
text, whether it is a date, a name or a reply button) so that the cleaning pass in
``web_clean`` reads as decisions, not regular expressions. The vocabularies are the
names publishing platforms actually use (WordPress, Disqus, Medium, Ghost, Substack,
news CMSs); a class name alone never removes the article, because ``web_clean``
protects every element that holds the title or the article body.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from functools import lru_cache

from lxml.html import HtmlElement


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_SPLIT = re.compile(r"[\s_\-:]+|(?<=[a-z])(?=[A-Z])")
_WORD = re.compile(r"\w+")

#: Class/id words of comment sections and items (Disqus: dsq, disqus; WordPress:
#: comment-list, comments-area, respond; Substack/Ghost: comments, discussion).
COMMENT_WORDS = _words(
    "comment comments commentlist comentarios kommentare responses replies discussion "
    "disqus dsq respond guestbook talkback"
)
RELATED_WORDS = _words(
    "related relatedposts recommended recommendations readmore readnext outbrain "
    "taboola morestories moreposts youmaylike further"
)
#: Two-word class names (``read-more``, ``more-from``) joined before matching.
RELATED_PAIRS = frozenset(
    {"readmore", "readnext", "morefrom", "morestories", "moreposts", "alsoread"}
)
NEWSLETTER_WORDS = _words(
    "newsletter subscribe subscription signup mailchimp mc4wp optin mailinglist"
)
#: What a newsletter prompt says, for the text just before a sign-up form.
NEWSLETTER_TEXT = re.compile(
    r"\b(?:newsletter|subscribe|sign up|signup|inbox|mailing list|email updates|by email)\b", re.I
)
SHARE_WORDS = frozenset({"share", "sharing", "sharedaddy", "social", "sharebar", "addthis"})
BIO_WORDS = frozenset({"bio", "biography", "authorbio", "authorinfo", "aboutauthor", "authorbox"})
BIO_PAIRS = frozenset({"authorbio", "authorinfo", "aboutauthor", "authorbox", "authorcard"})
#: Words (lower case) of links and buttons in a share bar.
SHARE_LABELS = _words(
    "share this tweet facebook twitter x linkedin email mail whatsapp reddit "
    "pinterest telegram copy link print on via like likes clap claps comment comments "
    "responses save bookmark"
)
#: A count on a control ("1.2K", "14", "♥ 3").
COUNT = re.compile(r"^[♥❤👍👏+]?\ufe0f?\d+(?:[.,]\d+)?[km]?$", re.I)
BYLINE_WORDS = frozenset({"byline", "meta", "dateline", "author", "info", "subline", "by"})
AUTHOR_WORDS = _words(
    "author user username name fn who commenter nick nickname hnuser poster byline avatar profile"
)
DATE_WORDS = frozenset({"date", "time", "when", "age", "timestamp", "ago", "posted", "published"})
#: Where a commenter's name links to.
PROFILE_LINKS = ("/@", "/u/", "/user", "/member", "/profile", "/author", "/people/")
#: Elements that set a commenter's name on its own.
NAME_TAGS = frozenset({"cite", "b", "strong", "h3", "h4", "h5", "h6"})
ACTION_WORDS = _words(
    "reply like likes vote votes voting upvote downvote score points clap claps heart "
    "karma votearrow replytocom"
)

_NUMBER_HEAD = r"(?:\d+\s+)?"
COMMENT_HEADING = re.compile(
    rf"^\d+\s+(?:comments?|responses?|replies|thoughts?)\s+(?:to|on)\b.*"
    rf"|^{_NUMBER_HEAD}(?:comments?|responses?|replies|reactions"
    r"|(?:reader|user)s?'? comments|discussion(?: about this (?:post|article|story))?"
    r"|join the (?:discussion|conversation)|leave a (?:reply|comment)"
    r"|what (?:readers|you) (?:say|think)|have your say)(?:\s*\(\d+\))?\s*:?$",
    re.I,
)
_RELATED = (
    r"related(?:\s+(?:posts?|articles?|stories|coverage|content|reading|links))?"
    r"|you (?:may|might) (?:also )?(?:like|enjoy)|read (?:more|next|also)|also read"
    r"|more (?:from|on|in)\b[^:]*|more (?:posts|stories|articles)|more"
    r"|recommended(?: for you| reading)?|see also|elsewhere on\b[^:]*|further reading"
    r"|popular (?:posts|stories)|most read|trending"
)
RELATED_HEADING = re.compile(rf"^(?:{_RELATED})\s*:?$", re.I)
BIO_HEADING = re.compile(r"^(?:about the authors?|about me|published by\b.*|written by\b.*)$", re.I)
#: An inline related link: "Read more: <a>…</a>".
RELATED_LEAD = re.compile(rf"^(?:{_RELATED})\s*:", re.I)

_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
DATE_TEXT = re.compile(
    rf"\b{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?\b|\b\d{{1,2}}(?:st|nd|rd|th)?\s+{_MONTH}"
    r"|\b\d{4}-\d{2}-\d{2}\b|\b\d{1,2}[./]\d{1,2}[./]\d{2,4}\b"
    r"|\b\d+\s*(?:seconds?|minutes?|mins?|hours?|hrs?|days?|weeks?|months?|years?)\s+ago\b"
    r"|^\s*\d{1,3}\s*[smhdwy]\s*$|\b(?:yesterday|just now)\b",
    re.I,
)
ACTION_TEXT = re.compile(
    r"^(?:reply|reply to this|respond|report|flag|permalink|like|upvote|downvote|vote up"
    r"|vote down|helpful|[♥❤👍👏▲+]\ufe0f?\s*\d+|\d+\s*(?:likes?|points?|upvotes?|votes?"
    r"|claps?|hearts?|(?:found this )?helpful\b.*))$",
    re.I,
)
ACTION_LABEL = re.compile(r"\b(?:reply|like|clap|upvote|vote|heart|recommend)\b", re.I)
SCHEMA_COMMENT = re.compile(r"(?:^|[/:\s])(?:Comment|UserComments)\s*$")


@dataclass
class Scan:
    """Signals of one element, not counting nested units; ``prose`` counts the words
    outside author, date and control elements."""

    action: bool = False
    author: bool = False
    date: bool = False
    prose: int = 0


def words(text: str) -> int:
    return len(_WORD.findall(text))


def tokens(text: str) -> list[str]:
    return _WORD.findall(text.lower())


_CONTROL_WORDS = SHARE_LABELS | {"reply", "report", "flag", "permalink", "follow", "more"}


def prose_words(text: str) -> int:
    """Words of ``text`` that could be prose: not numbers, not control labels."""
    return sum(
        1 for w in _WORD.findall(text.lower()) if not w.isdigit() and w not in _CONTROL_WORDS
    )


def text_of(el: HtmlElement) -> str:
    """The element's visible text, whitespace collapsed."""
    return " ".join(el.text_content().split())


class WordCount:
    """The number of words under each element, counted in one pass over the tree;
    elements added or changed after the pass are counted when asked."""

    def __init__(self, root: HtmlElement) -> None:
        self._counts: dict[HtmlElement, int] = {}
        self._visit(root)

    def _visit(self, el: HtmlElement) -> int:
        total = words(el.text or "") if isinstance(el.tag, str) else 0
        for child in el:
            if isinstance(child.tag, str):
                total += self._visit(child)
            total += words(child.tail or "")
        self._counts[el] = total
        return total

    def __call__(self, el: HtmlElement) -> int:
        found = self._counts.get(el)
        return words(text_of(el)) if found is None else found


@lru_cache(maxsize=4096)
def _parts(value: str) -> tuple[frozenset[str], frozenset[str]]:
    """(words, joined pairs) of a class/id string: ``jp-relatedposts`` gives the words
    jp, relatedposts, jprelatedposts and the pair jprelatedposts."""
    split = [[p.lower() for p in _SPLIT.split(token) if p] for token in value.split()]
    joined = {"".join(parts) for parts in split}
    singles = {p for parts in split for p in parts}
    pairs = {a + b for parts in split for a, b in itertools.pairwise(parts)}
    return frozenset(singles | joined), frozenset(pairs | joined)


def name_parts(el: HtmlElement) -> frozenset[str]:
    """The words of the element's class and id (``comment-list`` → comment, list, commentlist)."""
    return _parts(f"{el.get('class', '')} {el.get('id', '')}")[0]


def name_pairs(el: HtmlElement) -> frozenset[str]:
    return _parts(f"{el.get('class', '')} {el.get('id', '')}")[1]


def is_schema_comment(el: HtmlElement) -> bool:
    """schema.org ``Comment``/``UserComments`` as microdata or RDFa, or ``itemprop=comment``."""
    kind = f"{el.get('itemtype', '')} {el.get('typeof', '')}".strip()
    prop = f"{el.get('itemprop', '')} {el.get('property', '')}".lower().split()
    return bool(kind and SCHEMA_COMMENT.search(kind)) or any(
        p.rsplit(":", 1)[-1] in ("comment", "comments") for p in prop
    )


def is_article_body(el: HtmlElement) -> bool:
    """schema.org ``articleBody`` or the article-body class names of common CMSs."""
    prop = f"{el.get('itemprop', '')} {el.get('property', '')}".lower()
    if "articlebody" in prop:
        return True
    pairs = name_pairs(el)
    return bool(
        pairs
        & {
            "entrycontent",
            "postcontent",
            "articlebody",
            "articlecontent",
            "storybody",
            "postbody",
            "entrybody",
            "ghcontent",
            "storytext",
        }
    )


def label(el: HtmlElement) -> str:
    """What the element says to a screen reader: ARIA label, title, and an image
    button's alt text ("Reply With Quote" on old forums)."""
    alt = el.get("alt", "") if el.tag in ("img", "input") else ""
    return " ".join(f"{el.get('aria-label', '')} {el.get('title', '')} {alt}".split())


def is_date(el: HtmlElement, text: str) -> bool:
    """A small element that shows a date or an age ("3 days ago", "Mar 5", ``<time>``)."""
    if el.tag == "time" or "date" in f"{el.get('itemprop', '')}{el.get('property', '')}".lower():
        return True
    if words(text) > 10:
        return False
    return bool(DATE_TEXT.search(text)) or (
        bool(name_parts(el) & DATE_WORDS) and 0 < words(text) <= 6
    )


def is_author(el: HtmlElement, text: str) -> bool:
    """An avatar, a link to a profile, or a short name in an element named like one
    (``fn``, ``user``, ``who``) or set like one (``<cite>``, ``<b>``, a minor heading)."""
    if el.tag == "img":
        return not ACTION_LABEL.search(label(el))  # an image button is a control
    if words(text) > 5:
        return False
    prop = f"{el.get('itemprop', '')} {el.get('property', '')}".lower()
    href = el.get("href", "").lower() if el.tag == "a" else ""
    return (
        "author" in prop
        or bool(name_parts(el) & AUTHOR_WORDS)
        or any(k in href for k in PROFILE_LINKS)
        or (
            el.tag in NAME_TAGS and 0 < words(text) <= 4 and not text.endswith((".", "!", "?", ":"))
        )
    )


def is_action(el: HtmlElement, text: str) -> bool:
    """A reply link, a like/vote button or a like count."""
    if words(text) > 5:
        return False
    if ACTION_TEXT.match(text) or ACTION_LABEL.search(label(el)):
        return True
    href = el.get("href", "")
    return bool(name_parts(el) & ACTION_WORDS) or "replytocom" in href or "reply" in href.lower()
