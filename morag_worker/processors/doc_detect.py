"""Which document format a file is, from its content, with its name as a hint.

Binary formats are decided by content alone (a ``.pdf`` that is really a DOCX is
converted as a DOCX): ``%PDF-`` for PDF, and for zip archives the part that names the
Office Open XML flavour (``word/document.xml``, ``ppt/presentation.xml``,
``xl/workbook.xml``). Text formats look alike, so there the name decides when it
has a known suffix and the content decides otherwise (mail headers → EML, tags →
HTML, Markdown syntax → Markdown, anything else → plain text).

:func:`check_zip` is the zip-bomb guard: it reads only the central directory, before
anything is inflated. Python's zipfile never returns more bytes for an entry than
its directory record declares, so the declared sizes bound what a converter reads.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

from morag_worker.errors import BadInput

FORMATS = ("pdf", "docx", "pptx", "xlsx", "html", "eml", "markdown", "text")

#: Inflated/compressed ratio above which a large archive is a bomb: Office XML
#: compresses about 10-20×; only padding built to explode reaches 200×.
MAX_ZIP_RATIO = 200
#: Archives smaller than this inflated are never refused for their ratio alone:
#: a small, very repetitive spreadsheet can compress 200× and is harmless.
RATIO_FLOOR_BYTES = 16 * 1024 * 1024

_OOXML_PARTS = {
    "word/document.xml": "docx",
    "ppt/presentation.xml": "pptx",
    "xl/workbook.xml": "xlsx",
}
_SUFFIXES = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".pptx": "pptx",
    ".xlsx": "xlsx",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".eml": "eml",
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".text": "text",
}
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_MAIL_HEADERS = re.compile(
    rb"^(from|to|subject|date|message-id|mime-version|received|return-path):", re.I | re.M
)
_HTML_TAG = re.compile(rb"<(!doctype\s+html|html|head|body|title|p|div|h[1-6]|table)\b", re.I)
_MARKDOWN = re.compile(rb"^(#{1,6} \S|```|~~~|\|.*\|\s*$|\s*[-*] \S|\s*\d+\. \S)", re.M)


def suffix_format(name: str) -> str | None:
    """The format a file name suggests, or ``None`` for an unknown suffix."""
    return _SUFFIXES.get(Path(name).suffix.lower())


def check_zip(path: Path, *, max_unzipped_bytes: int, max_entries: int) -> zipfile.ZipFile:
    """Open ``path`` as a zip archive after checking its directory against the limits.

    Raises :class:`BadInput` for a corrupt archive, too many entries, too many
    inflated bytes in all, or a bomb-like compression ratio. The caller closes the
    returned archive.
    """
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise BadInput(
            f"the zip container is corrupt or truncated ({exc}); re-save the file"
        ) from None
    infos = archive.infolist()
    inflated = sum(info.file_size for info in infos)
    compressed = sum(info.compress_size for info in infos)
    problem = ""
    if len(infos) > max_entries:
        problem = f"it has {len(infos):,} entries (limit {max_entries:,}, --doc-max-zip-entries)"
    elif inflated > max_unzipped_bytes:
        problem = (
            f"it inflates to {inflated:,} bytes (limit {max_unzipped_bytes:,}, "
            "--doc-max-unzipped-bytes)"
        )
    elif inflated > RATIO_FLOOR_BYTES and inflated > MAX_ZIP_RATIO * max(compressed, 1):
        problem = f"it inflates {inflated // max(compressed, 1):,}× (limit {MAX_ZIP_RATIO}×)"
    if problem:
        archive.close()
        raise BadInput(f"refused a zip-bomb-like archive: {problem}; split or re-save the file")
    return archive


def _zip_format(path: Path, limits: tuple[int, int]) -> str:
    with check_zip(path, max_unzipped_bytes=limits[0], max_entries=limits[1]) as archive:
        names = set(archive.namelist())
    for part, fmt in _OOXML_PARTS.items():
        if part in names:
            return fmt
    raise BadInput(
        "unsupported file type: a zip archive that is not DOCX, PPTX or XLSX "
        "(supported: " + ", ".join(FORMATS) + ")"
    )


def _text_format(head: bytes, hint: str | None) -> str:
    if hint in ("html", "eml", "markdown", "text"):
        return hint
    if len(_MAIL_HEADERS.findall(head[:4096])) >= 3 and head.lstrip()[:1] not in (b"<", b"#"):
        return "eml"
    if _HTML_TAG.search(head):
        return "html"
    if len(_MARKDOWN.findall(head)) >= 2:
        return "markdown"
    return "text"


def _looks_binary(head: bytes) -> bool:
    if b"\0" in head:
        return True
    control = sum(1 for byte in head if byte < 32 and byte not in (9, 10, 12, 13, 27))
    return control > len(head) // 100 + 1


def detect_format(path: Path, name: str, *, zip_limits: tuple[int, int]) -> str:
    """Return one of :data:`FORMATS` for the file at ``path`` (originally called ``name``).

    ``zip_limits`` is ``(max_unzipped_bytes, max_entries)`` for :func:`check_zip`.
    Raises :class:`BadInput` for an empty, legacy, password-protected, corrupt or
    unsupported file.
    """
    with path.open("rb") as handle:
        head = handle.read(8192)
    hint = suffix_format(name)
    if not head.strip():
        raise BadInput("the file is empty; upload a file with content")
    if b"%PDF-" in head[:1024]:
        return "pdf"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _zip_format(path, zip_limits)
    if head.startswith(_OLE_MAGIC):
        raise BadInput(
            "a legacy (.doc/.xls/.ppt) or password-protected Office file; "
            "remove the password and save it as DOCX, PPTX or XLSX"
        )
    if hint in ("pdf", "docx", "pptx", "xlsx"):
        raise BadInput(f"named like a {hint.upper()} but is not one (corrupt or mislabelled)")
    if not head.startswith((b"\xff\xfe", b"\xfe\xff")) and _looks_binary(head):
        raise BadInput(
            "unsupported file type: binary content that is none of " + ", ".join(FORMATS)
        )
    return _text_format(head, hint)
