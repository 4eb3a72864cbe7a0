"""The size of every frame of an image, from its headers, before any pixel is decoded.

A pixel limit that looks at the first frame only is no limit: a TIFF whose first page is
10×10 may hold 13000×13000 pages behind it. :func:`check_frames` finds each frame's size
the cheapest way its format allows, without decoding:

- TIFF, MPO: seeking to a frame reads only its directory (Pillow decodes on ``load``);
- GIF: the frame descriptors are read here, block by block. Pillow composes every frame
  onto a canvas that grows to cover any frame extending past the logical screen, so a
  frame costs the canvas as it stands when it is reached;
- WebP, APNG: every frame is decoded at the canvas size, and the frame count is in the
  header.

Each frame must stay within ``max_image_pixels``; there may be at most
``max_image_frames`` frames, holding at most ``max_image_total_pixels`` together.
"""

from __future__ import annotations

import contextlib
import struct
from pathlib import Path
from typing import BinaryIO

from PIL import Image

from morag_worker.errors import BadInput
from morag_worker.processors.settings import ProcessorSettings

#: Formats whose frames all share the canvas size and whose header counts them.
_CANVAS_FORMATS = ("WEBP", "PNG")


def check_frames(image: Image.Image, path: Path, name: str, settings: ProcessorSettings) -> None:
    """Raise ``BadInput`` naming the limit and its flag if any frame limit is passed."""
    try:
        sizes = frame_sizes(image, path, settings.max_image_frames)
    except BadInput as exc:
        raise BadInput(f"{name}: {exc.message}") from None
    if len(sizes) > settings.max_image_frames:
        raise BadInput(
            f"{name}: the image has more than {settings.max_image_frames:,} frames, the "
            "limit; split it or raise --max-image-frames"
        )
    for number, (width, height) in enumerate(sizes, start=1):
        if width * height > settings.max_image_pixels:
            which = f"frame {number}: " if len(sizes) > 1 else ""
            raise BadInput(
                f"{name}: {which}{width}x{height} = {width * height:,} pixels exceeds the "
                f"limit of {settings.max_image_pixels:,} (--max-image-pixels); it may be a "
                "decompression bomb"
            )
    total = sum(width * height for width, height in sizes)
    if total > settings.max_image_total_pixels:
        raise BadInput(
            f"{name}: {total:,} pixels in {len(sizes)} frames, over the limit of "
            f"{settings.max_image_total_pixels:,} for one image; split it or raise "
            "--max-image-total-pixels"
        )


def frame_sizes(image: Image.Image, path: Path, limit: int) -> list[tuple[int, int]]:
    """``(width, height)`` of each frame as it will be decoded; at most ``limit + 1``
    entries (enough to tell that there are too many)."""
    if image.format == "GIF":
        with path.open("rb") as handle:
            return _gif_frames(handle, limit + 1)
    if image.format in _CANVAS_FORMATS:
        count = int(getattr(image, "n_frames", 1))
        return [image.size] * min(count, limit + 1)
    sizes: list[tuple[int, int]] = []
    try:
        for index in range(limit + 1):
            image.seek(index)  # reads the frame's directory, not its pixels
            sizes.append(image.size)
    except EOFError:
        pass
    except (OSError, SyntaxError, ValueError, struct.error) as exc:
        raise BadInput(f"cannot read the header of frame {len(sizes) + 1} ({exc})") from None
    finally:
        # A broken first frame is reported by decoding, with its own message.
        with contextlib.suppress(EOFError, OSError, ValueError):
            image.seek(0)
    return sizes


def _gif_frames(handle: BinaryIO, limit: int) -> list[tuple[int, int]]:
    """The canvas size at each of the first ``limit`` frames of a GIF, read as Pillow
    reads it (bytes between blocks that are none of ``!``, ``,``, ``;`` are skipped)."""
    head = handle.read(13)
    if len(head) < 13:
        return []
    width, height, flags = struct.unpack("<HHB", head[6:11])
    if flags & 0x80:
        handle.seek(3 << ((flags & 7) + 1), 1)  # global colour table
    sizes: list[tuple[int, int]] = []
    while len(sizes) < limit:
        block = handle.read(1)
        if not block or block == b";":
            break
        if block == b"!":
            handle.read(1)  # extension label
            _skip_sub_blocks(handle)
        elif block == b",":
            descriptor = handle.read(9)
            if len(descriptor) < 9:
                break
            left, top, frame_width, frame_height, frame_flags = struct.unpack("<HHHHB", descriptor)
            width, height = max(width, left + frame_width), max(height, top + frame_height)
            sizes.append((width, height))
            if frame_flags & 0x80:
                handle.seek(3 << ((frame_flags & 7) + 1), 1)  # local colour table
            handle.read(1)  # LZW minimum code size
            _skip_sub_blocks(handle)
    return sizes


def _skip_sub_blocks(handle: BinaryIO) -> None:
    while True:
        size = handle.read(1)
        if not size or size[0] == 0:
            return
        handle.seek(size[0], 1)
