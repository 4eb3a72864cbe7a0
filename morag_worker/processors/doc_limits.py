"""What one document may cost, checked before its conversion starts.

The zip-bomb guard (:func:`~morag_worker.processors.doc_detect.check_zip`) bounds what an
office file inflates to in all; a file well inside it can still cost minutes and
gigabytes (a 556 KB DOCX with 63 MB of repetitive XML took 230 s and 2.7 GiB). So, in
milliseconds and before any parser sees the file:

- office files: every part that holds XML (decided from its first bytes, not its name:
  the package's content types, not names, tell a library what a part is) may inflate to
  at most ``--doc-max-xml-part-bytes``, all of them together to ``--doc-max-xml-bytes``;
  their paragraphs, table rows and cells, spreadsheet rows, cells and strings are
  counted against ``--doc-max-elements``; slides and sheets against ``--doc-max-pages``;
- PDF: the page count from pypdfium2's page tree against ``--doc-max-pages``;
- HTML: block elements (paragraphs, list items, headings, table rows and cells) against
  ``--doc-max-elements``.

Counting is a scan of the raw XML for start tags by local name, whatever the namespace
prefix: it may count a few tags the converter skips, never fewer than it reads. Time
and memory during the conversion are bounded by :mod:`doc_budget`. Every refusal is
``BadInput`` naming the limit and the flag that raises it.
"""

from __future__ import annotations

import re
import zipfile
import zlib
from pathlib import Path

from morag_worker.errors import BadInput
from morag_worker.processors.settings import ProcessorSettings

#: Start tags counted as elements: WordprocessingML and DrawingML paragraphs, table rows
#: and cells (DOCX, PPTX), SpreadsheetML rows, cells and shared strings (XLSX).
_ELEMENT = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?(?:p|tr|tc|row|c|si)[\s/>]")
_HTML_ELEMENT = re.compile(r"<(?:p|li|tr|td|th|h[1-6]|dt|dd|blockquote|pre)[\s/>]", re.I)
_SLIDE = re.compile(r"ppt/slides/slide\d+\.xml")
_SHEET = re.compile(r"xl/worksheets/[^/]+\.xml")
_SLIDE_ID = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?sldId[\s/>]")
_SHEET_ENTRY = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?sheet[\s/>]")
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_SNIFF_BYTES = 512


def refusal(what: str, limit: int, per: str, flag: str) -> BadInput:
    """``BadInput`` for a document over one of its limits, naming the flag that raises it."""
    return BadInput(
        f"{what}; the limit is {limit:,} per {per}. Refused before converting: split the "
        f"file, or raise {flag}"
    )


def check_office(archive: zipfile.ZipFile, fmt: str, settings: ProcessorSettings) -> None:
    """Check an office package's XML sizes, element count and slide/sheet count."""
    xml_parts = [info for info in archive.infolist() if _holds_xml(archive, info)]
    for info in xml_parts:
        if info.file_size > settings.doc_max_xml_part_bytes:
            raise refusal(
                f"part {info.filename} inflates to {info.file_size:,} bytes of XML",
                settings.doc_max_xml_part_bytes,
                "part",
                "--doc-max-xml-part-bytes",
            )
    total = sum(info.file_size for info in xml_parts)
    if total > settings.doc_max_xml_bytes:
        raise refusal(
            f"its XML inflates to {total:,} bytes",
            settings.doc_max_xml_bytes,
            "document",
            "--doc-max-xml-bytes",
        )
    pages = _page_count(archive, fmt)
    if pages > settings.doc_max_pages:
        kind = "slides" if fmt == "pptx" else "sheets"
        raise refusal(f"it has {pages:,} {kind}", settings.doc_max_pages, "file", "--doc-max-pages")
    elements = 0
    for info in xml_parts:
        elements += _count(_ELEMENT, _xml_bytes(archive, info))
        if elements > settings.doc_max_elements:
            raise refusal(
                f"it holds at least {elements:,} paragraphs, table rows and cells",
                settings.doc_max_elements,
                "document",
                "--doc-max-elements",
            )


def check_html(text: str, settings: ProcessorSettings) -> None:
    """Count an HTML page's block elements (in its decoded text: a UTF-16 page hides its
    tags from a byte pattern) against ``doc_max_elements``."""
    elements = sum(1 for _ in _HTML_ELEMENT.finditer(text))
    if elements > settings.doc_max_elements:
        raise refusal(
            f"it holds {elements:,} paragraphs, list items and table cells",
            settings.doc_max_elements,
            "document",
            "--doc-max-elements",
        )


def check_pdf(path: Path, settings: ProcessorSettings) -> None:
    """Count a PDF's pages against ``doc_max_pages``. A file pypdfium2 cannot open passes
    here: the converter opens it again and names what is wrong with it."""
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError:
        return
    try:
        pages = len(pdf)
    finally:
        pdf.close()
    if pages > settings.doc_max_pages:
        raise refusal(f"it has {pages:,} pages", settings.doc_max_pages, "file", "--doc-max-pages")


def _count(pattern: re.Pattern[bytes], data: bytes) -> int:
    """Matches of ``pattern`` in ``data``, without keeping them (a sheet has millions)."""
    return sum(1 for _ in pattern.finditer(data))


def _page_count(archive: zipfile.ZipFile, fmt: str) -> int:
    """Slides or sheets: the larger of the parts present and the entries listing them."""
    if fmt == "pptx":
        parts = sum(1 for name in archive.namelist() if _SLIDE.fullmatch(name))
        return max(parts, _count_in(archive, "ppt/presentation.xml", _SLIDE_ID))
    if fmt == "xlsx":
        parts = sum(1 for name in archive.namelist() if _SHEET.fullmatch(name))
        return max(parts, _count_in(archive, "xl/workbook.xml", _SHEET_ENTRY))
    return 0


def _count_in(archive: zipfile.ZipFile, name: str, pattern: re.Pattern[bytes]) -> int:
    try:
        info = archive.getinfo(name)
    except KeyError:
        return 0
    return _count(pattern, _xml_bytes(archive, info))


def _read(archive: zipfile.ZipFile, info: zipfile.ZipInfo, size: int = -1) -> bytes:
    try:
        with archive.open(info) as handle:
            return handle.read(size)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError) as exc:
        raise BadInput(f"part {info.filename} is corrupt ({exc}); re-save the file") from None
    except RuntimeError as exc:  # zipfile's "File is encrypted, password required"
        raise BadInput(
            f"part {info.filename} is encrypted ({exc}); remove the password and save it again"
        ) from None


def _holds_xml(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bool:
    """Whether a part is text that an XML parser would read (not an image or blob)."""
    if info.is_dir() or info.file_size == 0:
        return False
    head = _read(archive, info, _SNIFF_BYTES)
    if head.startswith(_UTF16_BOMS) or head[:2] in (b"<\0", b"\0<"):
        return True
    head = head.removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n")
    return head.startswith(b"<") or not head


def _xml_bytes(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """A part's bytes, as UTF-8 when it is UTF-16 (so that tags can be counted)."""
    data = _read(archive, info)
    if data.startswith(_UTF16_BOMS) or data[:2] in (b"<\0", b"\0<"):
        encoding = "utf-16" if data.startswith(_UTF16_BOMS) else "utf-16-le"
        if data[:2] == b"\0<":
            encoding = "utf-16-be"
        return data.decode(encoding, errors="replace").encode()
    return data
