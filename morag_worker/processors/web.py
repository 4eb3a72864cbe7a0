"""The ``web`` task: fetch one page through the URL guard, keep its main content.

Input: ``parameters["url"]`` (no files) and optionally ``keep_comments`` (a boolean,
default false). The page is fetched with :func:`morag_worker.fetch.fetch` under the
settings' limits (``web_max_bytes``, ``fetch_*timeout_s``, ``allow_private_urls``,
``url_allow_list``) and must be HTML or XHTML. A cleaning pass (``web_clean``) takes
reader comments, newsletter forms, share bars, related links, author bios and the
byline out of the page; then trafilatura extracts the main content (tables kept as
pipe tables) as Markdown; newspaper3k can be chosen with ``--web-extractor newspaper``
when installed. Metadata is read from the page as fetched.

Output: ``# <title>`` followed by the body, and with ``keep_comments`` a final
``## Comments`` section (one list item per comment: author, date, text; replies
indented); metadata ``title``, ``author``, ``date`` (ISO), ``language`` (from
``<html lang>`` or ``Content-Language``), ``sitename``, ``description``, ``url``
(after redirects), ``requested_url``, ``redirects``, ``content_type``, ``bytes``,
``extractor``, ``comments`` (how many were found), ``comments_kept``, ``removed``
(blocks taken out, by kind) and ``seconds``.

Errors: a refused or malformed URL, 4xx, a non-HTML type, an oversize page or a page
with no readable text is ``BadInput``; network errors, timeouts and 5xx are
retryable ``TaskFailure`` (raised by the fetch).
"""

from __future__ import annotations

import re
import time
from types import ModuleType
from typing import Any

from morag_worker.errors import BadInput, Cancelled, ConfigError, ModelMissing
from morag_worker.fetch import Fetched, FetchLimits, fetch
from morag_worker.processors.base import TaskContext, bool_parameter
from morag_worker.processors.chunking import chunk_markdown
from morag_worker.processors.settings import ProcessorSettings
from morag_worker.protocol import TaskResult
from morag_worker.urlguard import UrlGuard

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_LANG = re.compile(r"<html\b[^>]*?\blang\s*=\s*[\"']?([A-Za-z]{2,3}(?:-[A-Za-z0-9]+)*)", re.I)


def fetch_limits(settings: ProcessorSettings) -> FetchLimits:
    """The fetch limits for a web page, from the settings."""
    return FetchLimits(
        max_bytes=settings.web_max_bytes,
        connect_timeout_s=settings.fetch_connect_timeout_s,
        read_timeout_s=settings.fetch_read_timeout_s,
        total_timeout_s=settings.fetch_timeout_s,
        content_types=HTML_TYPES,
    )


class WebProcessor:
    task_type = "web"

    def process(self, ctx: TaskContext) -> TaskResult:
        url = ctx.parameters.get("url")
        if not isinstance(url, str) or not url.strip():
            raise BadInput("a web task needs parameters.url, the http(s) URL of the page")
        keep_comments = bool_parameter(ctx.parameters, "keep_comments")
        extractor = ctx.settings.web_extractor.strip().lower()
        if extractor not in _EXTRACTORS:
            raise ConfigError(f"--web-extractor {extractor!r}: choose {' or '.join(_EXTRACTORS)}")
        started = time.monotonic()
        guard = UrlGuard.from_settings(ctx.settings.allow_private_urls, ctx.settings.url_allow_list)
        ctx.report(0.05, "fetch")
        page = fetch(url.strip(), guard, fetch_limits(ctx.settings))
        if ctx.cancelled():
            raise Cancelled()
        ctx.report(0.5, "extract")
        html = decode_html(page)
        body, meta = extract_page(html, page.url, extractor, keep_comments)
        if not body.strip():
            raise BadInput(f"{page.url!r}: no readable main text was found on the page")
        title = meta.get("title") or page.url
        content = f"# {title}\n\n{without_title(body, title)}\n"
        chunks = chunk_markdown(
            content,
            target_tokens=ctx.settings.chunk_tokens,
            overlap_tokens=ctx.settings.chunk_overlap_tokens,
            source=page.url,
        )
        meta.update(_fetch_metadata(url, page, html, extractor))
        meta["seconds"] = round(time.monotonic() - started, 3)
        return TaskResult(content=content, metadata=meta, chunks=chunks)


def extract_page(
    html: str, url: str, extractor: str = "trafilatura", keep_comments: bool = False
) -> tuple[str, dict[str, Any]]:
    """The page's main text as Markdown (comments appended when ``keep_comments``) and
    its metadata, read from the page as given (the cleaning removes the byline)."""
    cleaned = _cleaning().clean_page(html)
    text, meta = _EXTRACTORS[extractor]
    body = text(cleaned.html, url)
    if body.strip() and keep_comments and cleaned.comments:
        body = f"{body.strip()}\n\n{cleaned.comments_markdown()}"
    found = meta(html, url)
    found.update(
        comments=len(cleaned.comments), comments_kept=keep_comments, removed=cleaned.removed
    )
    return body, found


def without_title(body: str, title: str) -> str:
    """``body`` without a first line that repeats the title (the result starts with it)."""
    first, _, rest = body.strip().partition("\n")
    if " ".join(first.lstrip("#").split()).lower() == " ".join(title.split()).lower():
        return rest.strip()
    return body.strip()


def decode_html(page: Fetched) -> str:
    """The page as text: the header's charset when valid, else trafilatura's detection
    (``<meta charset>``, then a statistical guess)."""
    if page.charset:
        try:
            return page.body.decode(page.charset)
        except (LookupError, UnicodeDecodeError):
            pass  # a wrong header is common; fall back to detection
    from trafilatura.utils import decode_file

    return str(decode_file(page.body))


def _fetch_metadata(requested: str, page: Fetched, html: str, extractor: str) -> dict[str, Any]:
    match = _LANG.search(html[:20_000])
    header = page.headers.get("content-language", "").split(",")[0].strip()
    return {
        "language": (match.group(1) if match else header) or None,
        "url": page.url,
        "requested_url": requested,
        "redirects": page.redirects,
        "content_type": page.content_type,
        "bytes": len(page.body),
        "extractor": extractor,
    }


def _cleaning() -> ModuleType:
    """The cleaning pass (lxml), imported when a web task first runs."""
    try:
        from morag_worker.processors import web_clean
    except ImportError:
        raise ModelMissing("web tasks need lxml (pip install 'morag-worker[web]')") from None
    return web_clean


def _trafilatura_module() -> Any:
    try:
        import trafilatura
    except ImportError:
        raise ModelMissing("web tasks need trafilatura (pip install 'morag-worker[web]')") from None
    return trafilatura


def _trafilatura_text(html: str, url: str) -> str:
    """Main content as Markdown, with trafilatura."""
    trafilatura = _trafilatura_module()
    from trafilatura.settings import use_config

    config = use_config()
    # trafilatura's own timeout uses SIGALRM, which only works in a main thread; the
    # supervisor's task deadline bounds extraction instead.
    config.set("DEFAULT", "EXTRACTION_TIMEOUT", "0")
    options: dict[str, Any] = {
        "url": url,
        "include_comments": False,
        "include_tables": True,
        "include_formatting": True,
        "config": config,
    }
    html = _cleaning().with_body_hint(html)
    body = trafilatura.extract(html, output_format="markdown", **options)
    if not body:
        # Short pages fall below the precision-first heuristics; try for recall.
        body = trafilatura.extract(html, output_format="markdown", favor_recall=True, **options)
    return str(body or "")


def _trafilatura_meta(html: str, url: str) -> dict[str, Any]:
    found = _trafilatura_module().extract_metadata(html, default_url=url)
    fields = ("title", "author", "date", "sitename", "description")
    return {name: (getattr(found, name, None) or None) for name in fields}


def _newspaper_article(html: str, url: str) -> Any:
    try:
        from newspaper import Article
    except ImportError:
        raise ModelMissing(
            "--web-extractor newspaper needs newspaper3k and lxml_html_clean installed"
        ) from None
    article = Article(url, fetch_images=False)
    article.download(input_html=html)
    article.parse()
    return article


def _newspaper_text(html: str, url: str) -> str:
    """Main text with newspaper3k (plain paragraphs; no tables)."""
    return str(_newspaper_article(html, url).text or "")


def _newspaper_meta(html: str, url: str) -> dict[str, Any]:
    article = _newspaper_article(html, url)
    date = article.publish_date.date().isoformat() if article.publish_date else None
    return {
        "title": article.title or None,
        "author": ", ".join(article.authors) or None,
        "date": date,
        "sitename": None,
        "description": article.meta_description or None,
    }


_EXTRACTORS = {
    "trafilatura": (_trafilatura_text, _trafilatura_meta),
    "newspaper": (_newspaper_text, _newspaper_meta),
}
