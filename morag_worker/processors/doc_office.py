"""DOCX, PPTX, XLSX, HTML and EML → Markdown through docling's declarative backends.

docling (the ``docling-slim`` distribution with its format extras, no models, no
torch) gave the best Markdown offline for these formats: exact heading levels,
nested lists and pipe tables, in milliseconds a file. Slides and sheets are docling
"pages"; each is exported on its own under a ``<!-- page: N -->`` marker so chunks
know their slide or sheet, and each sheet gets its name as a heading.

Metadata that docling does not carry comes from the file itself: the OOXML core and
app properties (title, author, dates, page/slide counts) and the mail headers.
"""

from __future__ import annotations

import email
import email.policy
import io
import zipfile
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from morag_worker.errors import BadInput, ModelMissing
from morag_worker.processors.chunking import page_marker

_DOCLING_FORMATS = {"docx": "docx", "pptx": "pptx", "xlsx": "xlsx", "html": "html", "eml": "email"}
#: Formats this module converts (the others are PDF and plain text or Markdown).
DOCLING_FORMATS = frozenset(_DOCLING_FORMATS)
_EXTENSIONS = {"docx": "docx", "pptx": "pptx", "xlsx": "xlsx", "html": "html", "eml": "eml"}
_CORE_FIELDS = {
    "{http://purl.org/dc/elements/1.1/}title": "title",
    "{http://purl.org/dc/elements/1.1/}creator": "author",
    "{http://purl.org/dc/elements/1.1/}subject": "subject",
    "{http://purl.org/dc/elements/1.1/}language": "language",
    "{http://purl.org/dc/terms/}created": "created",
    "{http://purl.org/dc/terms/}modified": "modified",
    "{http://schemas.openxmlformats.org/package/2006/metadata/core-properties}keywords": (
        "keywords"
    ),
}
_APP_COUNTS = {"Pages": "pages", "Slides": "pages", "Words": "words"}
_APP_NS = "{http://schemas.openxmlformats.org/officeDocument/2006/extended-properties}"


class DoclingConverter:
    """One docling ``DocumentConverter`` per child, built on first use (import ≈ 1-4 s)."""

    def __init__(self) -> None:
        self._converter: Any = None

    def prepare(self) -> None:
        """Import docling and build the converter now (it is otherwise built on first use)."""
        self._get()

    def _get(self) -> Any:
        if self._converter is None:
            try:
                from docling.datamodel.base_models import InputFormat
                from docling.document_converter import DocumentConverter
            except ImportError as exc:
                raise ModelMissing(
                    f"converting office, HTML and mail files needs docling ({exc}); "
                    "install it with: pip install 'morag-worker[documents]'"
                ) from None
            allowed = [InputFormat(value) for value in _DOCLING_FORMATS.values()]
            self._converter = DocumentConverter(allowed_formats=allowed)
        return self._converter

    def convert(self, data: bytes, fmt: str) -> tuple[str, int | None]:
        """Markdown for ``data`` in format ``fmt``, and its page count when it has pages.

        Raises :class:`BadInput` when docling cannot read the file.
        """
        converter = self._get()
        from docling.datamodel.base_models import DocumentStream

        stream = DocumentStream(name=f"input.{_EXTENSIONS[fmt]}", stream=io.BytesIO(data))
        try:
            document = converter.convert(stream, raises_on_error=True).document
        except MemoryError:
            raise
        except Exception as exc:  # docling wraps parser errors in many types
            raise BadInput(f"cannot read this {fmt.upper()} file: {exc}") from None
        return _markdown(document, fmt), (len(document.pages) or None)


def _export(document: Any, page: int | None = None) -> str:
    text: str = document.export_to_markdown(
        page_no=page, escape_html=False, escape_underscores=False
    )
    return text.strip()


def _sheet_names(document: Any) -> dict[int, str]:
    """Page number → sheet name, from docling's ``sheet`` groups."""
    names: dict[int, str] = {}
    for group in document.groups:
        if str(getattr(group.label, "value", group.label)) != "sheet":
            continue
        for ref in group.children:
            prov = getattr(ref.resolve(document), "prov", None)
            if prov:
                names.setdefault(prov[0].page_no, group.name)
                break
    return names


def _markdown(document: Any, fmt: str) -> str:
    if not document.pages:
        return _export(document) + "\n"
    sheets = _sheet_names(document) if fmt == "xlsx" else {}
    parts = []
    for page in sorted(document.pages):
        body = _export(document, page)
        heading = f"# {sheets[page]}\n\n" if page in sheets else ""
        parts.append(f"{page_marker(page)}\n\n{heading}{body}")
    return "\n\n".join(parts) + "\n"


def ooxml_metadata(archive: zipfile.ZipFile) -> dict[str, Any]:
    """Title, author, dates and counts from ``docProps/core.xml`` and ``docProps/app.xml``.

    Missing or malformed property parts give an empty result: they are optional.
    """
    meta: dict[str, Any] = {}
    for part, handler in (("docProps/core.xml", _core_fields), ("docProps/app.xml", _app_fields)):
        try:
            root = ElementTree.fromstring(archive.read(part))
        except (KeyError, ElementTree.ParseError, zipfile.BadZipFile, OSError):
            continue
        meta.update(handler(root))
    return meta


def _core_fields(root: ElementTree.Element) -> dict[str, Any]:
    found = {}
    for child in root:
        key = _CORE_FIELDS.get(child.tag)
        if key and child.text and child.text.strip():
            found[key] = child.text.strip()
    return found


def _app_fields(root: ElementTree.Element) -> dict[str, Any]:
    found = {}
    for tag, key in _APP_COUNTS.items():
        node = root.find(_APP_NS + tag)
        if node is not None and node.text and node.text.strip().isdigit():
            found[key] = int(node.text.strip())
    return found


def eml_metadata(path: Path) -> dict[str, Any]:
    """Subject (as title), sender (as author), recipients, date and attachment names."""
    with path.open("rb") as handle:
        message = email.message_from_binary_file(handle, policy=email.policy.default)
    meta: dict[str, Any] = {}
    for header, key in (("Subject", "title"), ("From", "author"), ("To", "to"), ("Date", "date")):
        value = message.get(header)
        if value:
            meta[key] = str(value).strip()
    attachments = [
        part.get_filename() or "unnamed"
        for part in message.walk()
        if part.get_content_disposition() == "attachment"
    ]
    if attachments:
        meta["attachments"] = attachments
    return meta


class _HeadParser(HTMLParser):
    """Collects ``<title>`` and ``<meta name=author|description|…>`` from an HTML head."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.meta: dict[str, Any] = {}
        self._in_title = False
        self._title: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k.lower(): v for k, v in attrs if v}
        if tag == "title":
            self._in_title = True
        elif tag == "html" and values.get("lang"):
            self.meta["language"] = values["lang"]
        elif (
            tag == "meta" and values.get("name", "").lower() in _HTML_META and values.get("content")
        ):
            self.meta.setdefault(values["name"].lower(), values["content"].strip())

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
            title = " ".join("".join(self._title).split())
            if title:
                self.meta.setdefault("title", title)

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self._title.append(data)


_HTML_META = ("author", "description", "keywords", "date")


def html_metadata(text: str) -> dict[str, Any]:
    """Title, language and ``<meta>`` author/description/keywords/date of an HTML page."""
    parser = _HeadParser()
    head_end = text.lower().find("</head>")
    parser.feed(text[: head_end if head_end > 0 else 65536])
    parser.close()
    return parser.meta
