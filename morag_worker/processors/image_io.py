"""Opening untrusted images safely, and reading their EXIF metadata.

:func:`open_image` reads only headers: it refuses formats outside :data:`FORMATS`
(Pillow would otherwise hand EPS files to Ghostscript) and, through
:func:`~morag_worker.processors.image_frames.check_frames`, images with any frame over
the pixel limit, too many frames or too many pixels in all, before any pixel is
decoded; :func:`load_frames` then decodes and maps a truncated or corrupt file onto
``BadInput``.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

from PIL import ExifTags, Image, ImageOps, ImageSequence, UnidentifiedImageError

from morag_worker.errors import BadInput
from morag_worker.processors.image_frames import check_frames
from morag_worker.processors.settings import ProcessorSettings

#: Raster formats accepted. Pillow can open more (EPS through Ghostscript, PSD, ICNS
#: …); those widen the attack surface for no gain in an ingestion pipeline.
FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "GIF", "WEBP", "PPM", "JPEG2000")
#: EXIF values longer than this (thumbnails, maker notes) are left out of metadata.
_MAX_VALUE_CHARS = 500
_SKIPPED_TAGS = {"MakerNote", "UserComment", "PrintImageMatching", "ComponentsConfiguration"}

# Errors Pillow's decoders raise on corrupt data; all mean "this file is broken".
DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    Image.DecompressionBombError,
)


def open_image(path: Path, name: str, settings: ProcessorSettings) -> Image.Image:
    """Open ``path`` lazily and check its format, frames and sizes; ``BadInput`` if unusable.

    Limits: ``max_image_pixels`` for each frame, ``max_image_frames`` and
    ``max_image_total_pixels`` for all of them, all read from headers.
    """
    # Pillow's own bomb check (a process-wide limit) is switched off while headers are
    # read so that the settings alone decide, with a message naming them. A child runs
    # one task at a time, so no other thread sees the override.
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        image = _open(path, name)
        try:
            check_frames(image, path, name, settings)
        except BaseException:
            image.close()
            raise
    finally:
        Image.MAX_IMAGE_PIXELS = previous
    return image


def _open(path: Path, name: str) -> Image.Image:
    try:
        image = Image.open(path, formats=FORMATS)
    except UnidentifiedImageError:
        raise BadInput(
            f"{name}: not an image in a supported format ({', '.join(FORMATS)})"
        ) from None
    except DECODE_ERRORS as exc:
        raise BadInput(f"{name}: cannot read the image header ({exc})") from None
    width, height = image.size
    if width <= 0 or height <= 0:
        image.close()
        raise BadInput(f"{name}: the image declares no pixels ({width}x{height})")
    return image


def load_frames(image: Image.Image, name: str) -> Iterator[Image.Image]:
    """Decode each frame (all were checked by :func:`open_image`), upright per its EXIF
    orientation."""
    try:
        for frame in ImageSequence.Iterator(image):
            frame.load()
            upright = ImageOps.exif_transpose(frame)
            yield upright if upright is not None else frame.copy()
    except DECODE_ERRORS as exc:
        raise BadInput(f"{name}: the image is corrupt or truncated ({exc})") from None


def frame_count(image: Image.Image) -> int:
    return int(getattr(image, "n_frames", 1))


def _plain(value: Any) -> Any:
    """An EXIF value as JSON-friendly data, or ``None`` to leave it out."""
    if isinstance(value, bytes):
        value = value.rstrip(b"\x00").decode("utf-8", errors="replace")
    if isinstance(value, str):
        value = value.strip("\x00 ").strip()
        return value if value and len(value) <= _MAX_VALUE_CHARS else None
    if isinstance(value, Fraction) or type(value).__name__ == "IFDRational":
        try:
            return round(float(value), 6)
        except ZeroDivisionError:
            return None
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, tuple) and len(value) <= 16:
        items = [_plain(v) for v in value]
        return None if any(v is None for v in items) else items
    return None


def read_exif(image: Image.Image) -> dict[str, Any]:
    """EXIF tags by name from the main IFD, the Exif sub-IFD and the GPS IFD."""
    try:
        exif = image.getexif()
    except DECODE_ERRORS:
        return {}  # a broken EXIF block is not a reason to refuse the pixels
    groups = [(dict(exif), ExifTags.TAGS)]
    for ifd, names in (
        (ExifTags.IFD.Exif, ExifTags.TAGS),
        (ExifTags.IFD.GPSInfo, ExifTags.GPSTAGS),
    ):
        try:
            groups.append((dict(exif.get_ifd(ifd)), names))
        except DECODE_ERRORS:
            continue
    tags: dict[str, Any] = {}
    for values, names in groups:
        for tag, raw in values.items():
            name = str(names.get(tag, f"Tag{tag}"))
            if name in _SKIPPED_TAGS or raw is None or isinstance(raw, dict):
                continue
            value = _plain(raw)
            if value is not None:
                tags[name] = value
    return tags
