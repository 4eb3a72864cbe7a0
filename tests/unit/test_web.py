"""The web processor against generated article pages served on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter
from pathlib import Path

import pytest
from _localhttp import LocalServer, Reply, Route, serve

from morag_worker.errors import BadInput, TaskFailure
from morag_worker.processors.base import TaskContext
from morag_worker.processors.settings import ProcessorSettings
from morag_worker.processors.web import WebProcessor
from morag_worker.protocol import TaskResult

PAGES = Path(__file__).resolve().parents[1] / "fixtures" / "web"
SLUGS = sorted(p.stem for p in PAGES.glob("*.html"))
HTML = {"Content-Type": "text/html; charset=utf-8"}


def words(text: str) -> Counter[str]:
    return Counter(re.findall(r"\w+", text.lower()))


def recall_precision(expected: str, got: str) -> tuple[float, float]:
    """Word-level recall and precision, counting repeated words (bag of words)."""
    want, have = words(expected), words(got)
    common = sum((want & have).values())
    return common / sum(want.values()), common / max(sum(have.values()), 1)


def test_recall_precision_counts() -> None:
    assert recall_precision("a b c d", "a b c d") == (1.0, 1.0)
    assert recall_precision("a b c d", "a b x y") == (0.5, 0.5)
    assert recall_precision("a a b", "a b b b") == (2 / 3, 0.5)


def run(url: str, **changes: object) -> TaskResult:
    settings = dataclasses.replace(ProcessorSettings(), **changes)  # type: ignore[arg-type]
    ctx = TaskContext.local("web", parameters={"url": url}, settings=settings, work_dir=PAGES)
    return WebProcessor().process(ctx)


def _file(path: Path, headers: dict[str, str] = HTML) -> Route:
    return lambda _h: Reply(200, headers, path.read_bytes())


@pytest.fixture(scope="module")
def site() -> object:
    routes = {f"/{slug}": _file(PAGES / f"{slug}.html") for slug in SLUGS}
    with serve(routes) as srv:
        yield srv


@pytest.mark.parametrize("slug", SLUGS)
def test_article_body_and_metadata(site: LocalServer, slug: str) -> None:
    expected = json.loads((PAGES / f"{slug}.json").read_text())
    result = run(site.url(f"/{slug}"), allow_private_urls=True)
    title_line, body = result.content.split("\n", 1)
    assert title_line == f"# {expected['title']}"
    recall, precision = recall_precision(expected["body"], body)
    assert recall >= 0.95, recall
    assert precision >= 0.90, precision
    for phrase in expected["boilerplate"]:
        assert phrase.lower() not in result.content.lower(), phrase
    meta = result.metadata
    assert (meta["title"], meta["author"], meta["date"]) == (
        expected["title"],
        expected["author"],
        expected["date"],
    )
    assert (meta["language"], meta["url"], meta["extractor"]) == (
        "en",
        site.url(f"/{slug}"),
        "trafilatura",
    )
    assert result.chunks and all(c.heading_path[:1] == [expected["title"]] for c in result.chunks)


def test_tables_are_kept_as_pipe_tables(site: LocalServer) -> None:
    result = run(site.url("/river-sensors"), allow_private_urls=True)
    rows = [line for line in result.content.splitlines() if line.startswith("|")]
    assert len(rows) == 5  # header, delimiter and three data rows
    assert re.search(r"\|\s*Tannery culvert\s*\|\s*11\.7\s*\|\s*6\.2\s*\|", result.content)


def test_loopback_refused_unless_allowed(site: LocalServer) -> None:
    with pytest.raises(BadInput, match="loopback"):
        run(site.url("/night-trains"))
    assert run(site.url("/night-trains"), url_allow_list="127.0.0.0/8").metadata["title"]


def test_redirect_to_private_address_refused() -> None:
    routes: dict[str, Route] = {"/page": _file(PAGES / "night-trains.html")}
    with serve(routes) as srv:
        routes["/go"] = lambda _h: Reply(302, {"Location": srv.url("/page")})
        # Allowed by name, the server redirects to itself by loopback address.
        with pytest.raises(BadInput, match=r"127\.0\.0\.1.*loopback"):
            run(srv.url("/go", host="localhost"), url_allow_list="localhost")
        followed = run(srv.url("/go"), allow_private_urls=True)
    assert followed.metadata["redirects"] == [srv.url("/page")]
    assert followed.metadata["requested_url"] == srv.url("/go")


def test_non_html_content_types_refused() -> None:
    page = (PAGES / "night-trains.html").read_bytes()
    routes = {
        "/pdf": lambda _h: Reply(200, {"Content-Type": "application/pdf"}, b"%PDF-1.7"),
        "/text": lambda _h: Reply(200, {"Content-Type": "text/plain"}, page),
        "/xhtml": lambda _h: Reply(200, {"Content-Type": "application/xhtml+xml"}, page),
    }
    with serve(routes) as srv:
        for path in ("/pdf", "/text"):
            with pytest.raises(BadInput, match="expected application/xhtml"):
                run(srv.url(path), allow_private_urls=True)
        assert "sleeper train" in run(srv.url("/xhtml"), allow_private_urls=True).content


def test_fifty_megabyte_page_refused() -> None:
    filler = b"<p>" + b"filler text " * 1000 + b"</p>\n"  # 12 kB a piece
    pieces = 50 * 1024 * 1024 // len(filler)
    routes = {
        "/declared": lambda _h: Reply(200, HTML, b"<html><body>" + filler * pieces),
        "/streamed": lambda _h: Reply(200, HTML, (filler for _ in range(pieces))),
    }
    with serve(routes) as srv:
        with pytest.raises(BadInput, match=r"declares 5\d{7} bytes; the limit is 10485760"):
            run(srv.url("/declared"), allow_private_urls=True)
        with pytest.raises(BadInput, match="larger than the limit of 10485760 bytes"):
            run(srv.url("/streamed"), allow_private_urls=True)


def test_status_codes_and_missing_url() -> None:
    routes = {
        "/missing": lambda _h: Reply(404, HTML, b"<p>not here</p>"),
        "/broken": lambda _h: Reply(500, HTML, b"<p>oops</p>"),
        "/empty": lambda _h: Reply(200, HTML, b"<html><body><script>var x;</script></body></html>"),
    }
    with serve(routes) as srv:
        with pytest.raises(BadInput, match="HTTP 404"):
            run(srv.url("/missing"), allow_private_urls=True)
        with pytest.raises(TaskFailure, match="HTTP 500") as info:
            run(srv.url("/broken"), allow_private_urls=True)
        assert info.value.retryable
        with pytest.raises(BadInput, match="no readable main text"):
            run(srv.url("/empty"), allow_private_urls=True)
    with pytest.raises(BadInput, match=r"parameters\.url"):
        run("")


def test_charset_from_header_and_meta() -> None:
    text = "<html lang='fr'><head><title>Café</title></head><body><article>"
    text += "<p>Le café du coin ouvre à sept heures et sert des croissants très frais.</p>" * 4
    text += "</article></body></html>"
    latin = text.encode("iso-8859-1")
    meta_tagged = text.replace("<head>", '<head><meta charset="iso-8859-1">').encode("iso-8859-1")
    routes = {
        "/header": lambda _h: Reply(200, {"Content-Type": "text/html; charset=ISO-8859-1"}, latin),
        "/meta": lambda _h: Reply(200, {"Content-Type": "text/html"}, meta_tagged),
    }
    with serve(routes) as srv:
        for path in ("/header", "/meta"):
            result = run(srv.url(path), allow_private_urls=True)
            assert "Le café du coin ouvre à sept heures" in result.content
            assert result.metadata["language"] == "fr"


def test_newspaper_backend_when_installed(site: LocalServer) -> None:
    pytest.importorskip("newspaper")
    expected = json.loads((PAGES / "night-trains.json").read_text())
    result = run(site.url("/night-trains"), allow_private_urls=True, web_extractor="newspaper")
    meta = result.metadata
    assert (meta["title"], meta["author"], meta["date"]) == (
        expected["title"],
        expected["author"],
        expected["date"],
    )
    assert meta["extractor"] == "newspaper"
    # newspaper3k finds the body but is less precise than trafilatura (it keeps the
    # in-article newsletter box), which is why it is not the default.
    recall, _precision = recall_precision(expected["body"], result.content.split("\n", 1)[1])
    assert recall >= 0.95
