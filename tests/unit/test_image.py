"""The image processor with real Tesseract on generated fixtures (tests/fixtures/images)."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from _localhttp import Reply, Route, serve
from PIL import Image

from morag_worker.errors import BadInput, ConfigError, ModelMissing
from morag_worker.models.cache import ModelCache
from morag_worker.processors.base import TaskContext
from morag_worker.processors.image import ImageProcessor
from morag_worker.processors.ocr import ocr_image
from morag_worker.processors.settings import ProcessorSettings
from morag_worker.protocol import TaskResult

IMAGES = Path(__file__).resolve().parents[1] / "fixtures" / "images"
TRUTH = (IMAGES / "text.txt").read_text()


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions), two-row DP."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def cer(reference: str, hypothesis: str) -> float:
    """Character error rate with runs of whitespace counted as one space."""
    ref, hyp = " ".join(reference.split()), " ".join(hypothesis.split())
    return edit_distance(ref, hyp) / len(ref)


def test_edit_distance_and_cer() -> None:
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3
    assert cer("a  b\nc", "a b c") == 0.0
    assert cer("abcd", "abed") == 0.25


def run(path: Path, name: str | None = None, **changes: object) -> TaskResult:
    settings = dataclasses.replace(ProcessorSettings(), **changes)  # type: ignore[arg-type]
    ctx = TaskContext(
        task_id="t1",
        task_type="image",
        parameters={},
        inputs=[path],
        input_names=[name or path.name],
        work_dir=path.parent,
        device="cpu",
        models=ModelCache(),
        settings=settings,
    )
    return ImageProcessor().process(ctx)


def body(result: TaskResult) -> str:
    """The OCR text: the Markdown without its title heading."""
    return result.content.split("\n", 1)[1].split("## Description")[0]


@pytest.mark.parametrize("fixture", ["clean.png", "scanned.jpg"])
def test_tesseract_reads_rendered_text(fixture: str) -> None:
    result = run(IMAGES / fixture)
    assert cer(TRUTH, body(result)) <= 0.03
    # Reading order: the four rendered paragraphs come back as four paragraphs.
    paragraphs = [p for p in body(result).split("\n\n") if p.strip()]
    assert len(paragraphs) == 4
    assert paragraphs[0].strip() == "Quarterly Maintenance Report"
    ocr = result.metadata["ocr"]
    assert ocr["backend"] == "tesseract" and ocr["paragraphs"] == 4 and ocr["lines"] == 6
    assert 0.8 < ocr["confidence"] <= 1.0
    assert result.metadata["description"]["status"] == "not_configured"
    assert result.chunks and "pressure test" in " ".join(c.text for c in result.chunks)
    assert result.content.startswith(f"# {fixture}\n")


def test_exif_metadata_is_read() -> None:
    result = run(IMAGES / "exif.jpg")
    exif = result.metadata["exif"]
    assert exif["Make"] == "MoragCam"
    assert exif["Model"] == "Fixture 1"
    assert exif["DateTime"] == "2024:05:14 09:30:00"
    assert exif["ImageDescription"] == "Harbour notice board"
    assert (result.metadata["format"], result.metadata["width"]) == ("JPEG", 1200)
    assert "ferry departs at 07:45 from pier 3" in result.content


def test_exif_orientation_is_applied_before_ocr(tmp_path: Path) -> None:
    sideways = Image.open(IMAGES / "exif.jpg").rotate(90, expand=True)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    sideways.save(tmp_path / "sideways.jpg", exif=exif)
    assert "ferry departs at 07:45" in run(tmp_path / "sideways.jpg").content


def test_multipage_tiff_gives_one_section_per_page(tmp_path: Path) -> None:
    first = Image.open(IMAGES / "exif.jpg").convert("L")
    second = Image.open(IMAGES / "clean.png").convert("L")
    first.save(tmp_path / "two.tiff", save_all=True, append_images=[second])
    result = run(tmp_path / "two.tiff")
    assert result.metadata["frames"] == 2
    page1, page2 = result.content.split("## Page 2")
    assert "## Page 1" in page1 and "ferry departs" in page1
    assert "Quarterly Maintenance Report" in page2
    assert len(result.metadata["ocr"]["page_confidences"]) == 2


def test_sixteen_bit_and_transparent_images(tmp_path: Path) -> None:
    grey = Image.open(IMAGES / "exif.jpg").convert("L")
    deep = grey.convert("I").point(lambda v: v * 257).convert("I;16")  # 0..65535
    deep.save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    assert "ferry departs at 07:45" in run(tmp_path / "deep.png").content
    # Black text on a transparent background: flattened onto white, not onto black.
    clear = Image.new("LA", grey.size, (0, 0))
    clear.putalpha(grey.point(lambda v: 255 - v))
    clear.save(tmp_path / "clear.png")
    assert "ferry departs at 07:45" in run(tmp_path / "clear.png").content


def test_decompression_bomb_refused_before_decoding() -> None:
    assert (IMAGES / "bomb.png").stat().st_size < 200_000
    with pytest.raises(BadInput, match="400,000,000 pixels exceeds the limit of 100,000,000"):
        run(IMAGES / "bomb.png")
    with pytest.raises(BadInput, match="exceeds the limit of 1,000"):
        run(IMAGES / "clean.png", max_image_pixels=1000)


@pytest.mark.parametrize(
    ("fixture", "message"),
    [("truncated.png", "corrupt or truncated"), ("garbage.jpg", "garbage.jpg: ")],
)
def test_corrupt_images_refused(fixture: str, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        run(IMAGES / fixture)


def test_unsupported_formats_refused(tmp_path: Path) -> None:
    eps = tmp_path / "drawing.eps"
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    svg = tmp_path / "logo.png"
    svg.write_text('<svg xmlns="http://www.w3.org/2000/svg"><text>hi</text></svg>')
    for path in (eps, svg):
        with pytest.raises(BadInput, match="not an image in a supported format"):
            run(path)


def test_exactly_one_input_required() -> None:
    ctx = TaskContext("t", "image", {}, [], [], IMAGES, "cpu", ModelCache(), ProcessorSettings())
    with pytest.raises(BadInput, match="exactly one image"):
        ImageProcessor().process(ctx)


def test_ocr_image_function_for_other_processors() -> None:
    text, confidence = ocr_image(Image.open(IMAGES / "clean.png"), ProcessorSettings())
    assert cer(TRUTH, text) <= 0.03 and 0.8 < confidence <= 1.0
    blank = Image.new("RGB", (400, 200), "white")
    assert ocr_image(blank, ProcessorSettings()) == ("", 0.0)


def test_missing_language_and_unknown_backend() -> None:
    image = Image.open(IMAGES / "exif.jpg")
    with pytest.raises(ModelMissing, match="tesseract-ocr-xyz"):
        ocr_image(image, dataclasses.replace(ProcessorSettings(), ocr_languages="xyz"))
    with pytest.raises(ConfigError, match="--ocr-backend"):
        ocr_image(image, dataclasses.replace(ProcessorSettings(), ocr_backend="magic"))


def test_rapidocr_backend_reads_clean_text() -> None:
    pytest.importorskip("rapidocr_onnxruntime")
    result = run(IMAGES / "clean.png", ocr_backend="rapidocr")
    # RapidOCR drops spaces in small Latin print, so compare without whitespace.
    squeeze = "".join(TRUTH.split()), "".join(body(result).split())
    assert edit_distance(*squeeze) / len(squeeze[0]) <= 0.03
    assert result.metadata["ocr"]["backend"] == "rapidocr"
    assert (result.metadata["ocr"]["paragraphs"], result.metadata["ocr"]["lines"]) == (4, 6)


def _chat_reply(handler: BaseHTTPRequestHandler) -> Reply:
    request = json.loads(handler.request_body)  # type: ignore[attr-defined]
    parts = request["messages"][0]["content"]
    url = next(p["image_url"]["url"] for p in parts if p["type"] == "image_url")
    header, data = url.split(",", 1)
    image = Image.open(io.BytesIO(base64.b64decode(data)))
    text = f"A {image.format} notice, {image.width}px wide, for model {request['model']}."
    answer = {"choices": [{"message": {"role": "assistant", "content": text}}]}
    assert header == "data:image/jpeg;base64"
    return Reply(200, {"Content-Type": "application/json"}, json.dumps(answer).encode())


def test_endpoint_describer_adds_a_description() -> None:
    routes: dict[str, Route] = {"/v1/chat/completions": _chat_reply}
    with serve(routes) as srv:
        result = run(
            IMAGES / "exif.jpg", describe_endpoint=srv.url("/v1"), describe_model="vlm-test"
        )
    description = result.metadata["description"]
    assert description["status"] == "ok" and description["describer"] == "endpoint:vlm-test"
    assert "## Description\n\nA JPEG notice, 1024px wide, for model vlm-test." in result.content
    assert "ferry departs" in result.content


def test_failing_describer_keeps_the_ocr_text() -> None:
    routes = {"/v1/chat/completions": lambda _h: Reply(503, {}, b"overloaded")}
    with serve(routes) as srv:
        result = run(IMAGES / "exif.jpg", describe_endpoint=srv.url("/v1"))
    description = result.metadata["description"]
    assert description["status"] == "failed" and "HTTP 503" in description["error"]
    assert "ferry departs" in result.content and "## Description" not in result.content
