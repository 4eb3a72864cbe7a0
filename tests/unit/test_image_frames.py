"""Every frame of a multi-frame image is counted from its headers before any is decoded.

Fixtures are generated here: TIFFs with a tiny first page and huge later ones (Pillow,
1-bit pages that compress to almost nothing), a GIF whose later frame grows the canvas
(written block by block, as no encoder makes one), and GIF, WebP and TIFF files with
more frames than allowed.
"""

from __future__ import annotations

import random
import struct
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from morag_worker.errors import BadInput
from morag_worker.processors.base import TaskContext
from morag_worker.processors.image import ImageProcessor
from morag_worker.processors.settings import ProcessorSettings
from morag_worker.protocol import TaskResult


def run(path: Path, **overrides: Any) -> TaskResult:
    settings = ProcessorSettings(**overrides)
    return ImageProcessor().process(TaskContext.local("image", [path], settings=settings))


def tiff(path: Path, sizes: list[tuple[int, int]]) -> Path:
    frames = [Image.new("1", size, 1) for size in sizes]
    frames[0].save(path, "TIFF", save_all=True, append_images=frames[1:], compression="packbits")
    return path


def noise_frames(count: int, size: tuple[int, int]) -> list[Image.Image]:
    rng = random.Random(3)
    return [
        Image.frombytes("L", size, bytes(rng.randrange(256) for _ in range(size[0] * size[1])))
        for _ in range(count)
    ]


def growing_gif(path: Path, later: tuple[int, int]) -> Path:
    """A 10×10 GIF whose second frame is ``later`` pixels (Pillow grows its canvas to it)."""

    def frame(width: int, height: int) -> bytes:
        descriptor = b"," + struct.pack("<HHHHB", 0, 0, width, height, 0)
        # LZW with a 2-bit minimum code size: a clear code and an end code, no pixels.
        return descriptor + b"\x02" + b"\x01\x2c" + b"\x00"

    screen = b"GIF89a" + struct.pack("<HHBBB", 10, 10, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    path.write_bytes(screen + frame(10, 10) + frame(*later) + b";")
    return path


def test_tiff_with_a_tiny_first_page_and_huge_later_ones_is_refused(tmp_path: Path) -> None:
    path = tiff(tmp_path / "pages.tif", [(10, 10), (13000, 13000), (13000, 13000), (13000, 13000)])
    with pytest.raises(
        BadInput, match=r"frame 2: 13000x13000 = 169,000,000 pixels exceeds"
    ) as info:
        run(path)
    assert "--max-image-pixels" in info.value.message and not info.value.retryable


def test_gif_frame_that_grows_the_canvas_is_refused(tmp_path: Path) -> None:
    path = growing_gif(tmp_path / "grow.gif", (12000, 12000))
    with pytest.raises(BadInput, match=r"frame 2: 12000x12000 = 144,000,000 pixels exceeds"):
        run(path)


@pytest.mark.parametrize("kind", ["GIF", "WEBP", "TIFF"])
def test_too_many_frames_are_refused(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"many.{kind.lower()}"
    frames = noise_frames(101, (24, 16))
    extra = {"lossless": True} if kind == "WEBP" else {}
    frames[0].save(path, kind, save_all=True, append_images=frames[1:], **extra)
    with pytest.raises(BadInput, match=r"more than 100 frames.*--max-image-frames"):
        run(path)


@pytest.mark.parametrize("kind", ["GIF", "WEBP", "TIFF"])
def test_pixels_of_all_frames_are_counted_together(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"sum.{kind.lower()}"
    frames = noise_frames(5, (30, 30))  # 900 pixels each, 4,500 in all
    extra = {"lossless": True} if kind == "WEBP" else {}
    frames[0].save(path, kind, save_all=True, append_images=frames[1:], **extra)
    with pytest.raises(BadInput, match=r"4,500 pixels in 5 frames.*--max-image-total-pixels"):
        run(path, max_image_total_pixels=4_000)
    with pytest.raises(BadInput, match=r"more than 4 frames.*--max-image-frames"):
        run(path, max_image_frames=4)


def test_frames_within_the_limits_are_all_read(tmp_path: Path) -> None:
    path = tiff(tmp_path / "ok.tif", [(40, 40), (60, 50), (50, 60)])
    result = run(path, max_image_frames=3, max_image_total_pixels=40 * 40 + 2 * 3000)
    assert result.metadata["frames"] == 3
    assert len(result.metadata["ocr"]["page_confidences"]) == 3
