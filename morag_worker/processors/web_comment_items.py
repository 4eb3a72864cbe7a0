"""Read the comments that ``web_comments`` found: author, date, text and reply depth,
and write them as the ``## Comments`` section of a kept-comments result."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from lxml.html import HtmlElement

from morag_worker.processors import web_signals as sig
from morag_worker.processors.web_comments import Finder
from morag_worker.processors.web_tree import alike, is_headingish, iter_ancestors

_DATE_ATTRS = ("datetime", "content", "title")
#: Fewest words for a comments box without recognisable items to count as one comment:
#: less is a count or a label ("14 comments", "Load more").
PLAIN_BOX_MIN_WORDS = 5


@dataclass(frozen=True)
class WebComment:
    author: str | None
    date: str | None
    text: str
    #: 0 for a comment on the article, 1 for a reply to a comment, and so on.
    depth: int


def read_comments(finder: Finder, sections: list[HtmlElement]) -> list[WebComment]:
    """One :class:`WebComment` per comment unit in ``sections``, in page order.

    Units and schema.org items are comments; a section without either gives its own
    text as one comment when it is a box of plain text (no heading, no form)."""
    out: list[WebComment] = []
    for section in sections:
        units = [el for el in section.iter() if _is_item(finder, el)]
        if not units and _plain_comment_box(finder, section):
            units = [section]
        for unit, depth in zip(units, _depths(finder, units), strict=True):
            comment = _read(finder, unit, depth)
            if comment.text:
                out.append(comment)
    return out


def _is_item(finder: Finder, el: HtmlElement) -> bool:
    return isinstance(el.tag, str) and (finder.is_unit(el) or sig.is_schema_comment(el))


def _plain_comment_box(finder: Finder, section: HtmlElement) -> bool:
    if is_headingish(section, finder.count) or section.find(".//textarea") is not None:
        return False
    return section.find(".//input") is None and finder.count(section) >= PLAIN_BOX_MIN_WORDS


def _spoken(el: HtmlElement, quiet: Callable[[HtmlElement], bool]) -> str:
    """``el``'s text without the parts that are names, dates or controls."""
    pieces = [el.text or ""]
    for child in el.iterdescendants():
        if not quiet(child) and child.text:
            pieces.append(child.text)
        parent = child.getparent()
        if child.tail and parent is not None and not quiet(parent):
            pieces.append(child.tail)
    text = " ".join(" ".join(pieces).split())
    return text.strip(" ,·|:-")


def _depths(finder: Finder, units: list[HtmlElement]) -> list[int]:
    """Reply depth of each unit (in page order): how many earlier comments it sits in."""
    stack: list[HtmlElement] = []
    depths = []
    for unit in units:
        while stack and not _inside(finder, unit, stack[-1]):
            stack.pop()
        depths.append(len(stack))
        stack.append(unit)
    return depths


def _inside(finder: Finder, unit: HtmlElement, earlier: HtmlElement) -> bool:
    """Whether ``unit`` belongs to ``earlier``'s comment: inside it, or in a branch beside
    it (a reply list) rather than in the next item of the same list."""
    line = {a: child for child, a in _steps(unit)}
    toward_earlier = earlier
    for node in iter_ancestors(earlier, include_self=True):
        if node in line:
            if node is earlier:
                return True
            toward_unit = line[node]
            both_units = _is_item(finder, toward_earlier) and _is_item(finder, toward_unit)
            return not (both_units or alike(toward_earlier, toward_unit))
        toward_earlier = node
    return False


def _steps(el: HtmlElement) -> Iterator[tuple[HtmlElement, HtmlElement]]:
    """``(child, ancestor)`` pairs from ``el`` up, and ``(el, el)`` first."""
    yield el, el
    child = el
    for node in iter_ancestors(el):
        yield child, node
        child = node


def _own(finder: Finder, unit: HtmlElement) -> Iterator[HtmlElement]:
    """``unit``'s descendants that are not inside a nested unit."""
    for child in unit:
        if not isinstance(child.tag, str) or child.tag == "form" or _is_item(finder, child):
            continue  # a reply form is no part of the comment's text
        yield child
        yield from _own(finder, child)


def _read(finder: Finder, unit: HtmlElement, depth: int) -> WebComment:
    own = list(_own(finder, unit))
    kinds = _signals(own)
    signal = set(kinds)
    author = next(
        (sig.text_of(el) for el, k in kinds.items() if k == "author" and sig.text_of(el)), None
    )
    date = next((_date_value(el) for el, k in kinds.items() if k == "date"), None)
    if author is None:
        author = _first_short(own, signal)
    if author is None:
        avatars = (el for el in own if el.tag == "img" and sig.is_author(el, ""))
        author = next((str(el.get("alt")) for el in avatars if el.get("alt")), None)
    return WebComment(author, date, _text(unit, own, signal, author), depth)


def _signals(own: list[HtmlElement]) -> dict[HtmlElement, str]:
    """The smallest elements that are an author, a date or a control, by kind, in page
    order (a header holding name and date is neither; its parts are)."""
    kinds: dict[HtmlElement, str] = {}
    for el in reversed(own):  # children before parents
        text = sig.text_of(el)
        if sig.words(text) > 10:
            continue
        if el.tag == "img":
            kinds[el] = "avatar"  # no text: it must not hide the name beside it
            continue
        if any(kinds.get(d, "avatar") != "avatar" for d in el.iterdescendants()):
            if sig.DATE_TEXT.search(_loose(el)):  # "<b>Ann</b> wrote on 5.3.2024"
                kinds[el] = "date"
            continue
        if sig.is_date(el, text):
            kinds[el] = "date"
        elif sig.is_action(el, text):
            kinds[el] = "action"
        elif sig.is_author(el, text):
            kinds[el] = "author"
    return dict(reversed(list(kinds.items())))


def _loose(el: HtmlElement) -> str:
    """The element's own text, outside its child elements."""
    return " ".join(" ".join([el.text or "", *(c.tail or "" for c in el)]).split())


def _date_value(el: HtmlElement) -> str:
    """A machine-readable date from the element's attributes, else the date in its text."""
    for name in _DATE_ATTRS:
        value = el.get(name, "")
        if value[:4].isdigit() and "-" in value:
            return value
    text = sig.text_of(el)
    found = sig.DATE_TEXT.search(text)
    return found.group(0).strip() if found and sig.words(text) > 4 else text


def _first_short(own: list[HtmlElement], signal: set[HtmlElement]) -> str | None:
    """A comment starts with its author's name: the first short text, when it is short."""
    for el in own:
        text = " ".join((el.text or "").split())
        if not text:
            continue
        if el in signal or any(a in signal for a in iter_ancestors(el)):
            continue
        if sig.words(text) <= 4 and not text.endswith((".", "!", "?")):
            signal.add(el)
            return text
        return None
    return None


def _text(
    unit: HtmlElement, own: list[HtmlElement], signal: set[HtmlElement], author: str | None
) -> str:
    """The comment's paragraphs, or failing those its loose text, without its author,
    date and controls."""

    def quiet(el: HtmlElement) -> bool:
        return el in signal or any(a in signal for a in iter_ancestors(el))

    paragraphs = [_spoken(p, quiet) for p in own if p.tag == "p" and not quiet(p)]
    paragraphs = [p for p in paragraphs if sig.prose_words(p) and p != author]
    if paragraphs:
        return "\n".join(paragraphs)
    pieces: list[str] = [unit.text or ""]
    for el in own:
        if not quiet(el) and el.text:
            pieces.append(el.text)
        parent = el.getparent()
        if el.tail and parent is not None and not quiet(parent):
            pieces.append(el.tail)
    return " ".join(" ".join(pieces).split())


def comments_markdown(comments: list[WebComment]) -> str:
    """``## Comments`` and one list item per comment, replies indented under theirs."""
    lines = ["## Comments", ""]
    for c in comments:
        who = f"**{c.author.replace('*', '')}**" if c.author else "**(anonymous)**"
        when = f" ({c.date})" if c.date else ""
        text = " ".join(c.text.split())
        lines.append(f"{'  ' * min(c.depth, 6)}- {who}{when}: {text}")
    return "\n".join(lines)
