"""YouTube-type tasks through yt-dlp against a local HTTP server (its generic extractor)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("yt_dlp", reason="pip install morag-worker[youtube]")
pytest.importorskip("faster_whisper", reason="pip install morag-worker[audio]")

from speech_metrics import word_error_rate
from speech_support import MEDIA, context, serve_media, true_turns

from morag_worker.errors import BadInput
from morag_worker.models.cache import ModelCache
from morag_worker.processors.youtube import YoutubeProcessor, _check_protocol, parse_captions
from morag_worker.protocol import TaskResult


def _run(tmp_path: Path, url: str, cache: ModelCache, **overrides: Any) -> TaskResult:
    params = {"url": url, "num_speakers": 2}
    ctx = context(tmp_path, "youtube", [], cache, params, **overrides)
    return YoutubeProcessor().process(ctx)


def test_page_with_captions_needs_no_transcription(tmp_path: Path) -> None:
    cache = ModelCache()
    with serve_media() as server:
        result = _run(tmp_path, server.url("page.html"), cache, allow_private_urls=True)
    assert result.metadata["transcript_source"] == "captions:manual"
    assert result.metadata["title"].startswith("Team meeting")
    assert cache.stats.misses == 0, "captions must not load a Whisper model"
    assert "/conversation.mp4" not in server.paths, "captions must not download the media"
    truth = true_turns()
    assert result.segments is not None and len(result.segments) == len(truth)
    for seg, turn in zip(result.segments, truth, strict=True):
        assert seg["start"] == pytest.approx(turn["start"], abs=0.001)
        assert seg["end"] == pytest.approx(turn["end"], abs=0.001)
        assert seg["text"] == turn["text"]
    assert result.chunks and result.chunks[0].start_s == pytest.approx(truth[0]["start"], abs=0.001)


def test_page_without_captions_is_transcribed(tmp_path: Path) -> None:
    with serve_media() as server:
        result = _run(
            tmp_path, server.url("page_nocaptions.html"), ModelCache(), allow_private_urls=True
        )
    assert result.metadata["transcript_source"] == "transcription"
    assert "/conversation.mp4" in server.paths
    reference = " ".join(t["text"] for t in true_turns())
    hypothesis = " ".join(s["text"] for s in result.segments or [])
    assert word_error_rate(reference, hypothesis) <= 0.2, hypothesis
    assert len(result.metadata["speakers"]) == 2


def test_direct_media_url_is_transcribed(tmp_path: Path) -> None:
    with serve_media() as server:
        url = server.url("paragraph.ogg")
        ctx = context(tmp_path, "youtube", [], ModelCache(), {"url": url}, allow_private_urls=True)
        result = YoutubeProcessor().process(ctx)
    hypothesis = " ".join(s["text"] for s in result.segments or [])
    assert word_error_rate((MEDIA / "paragraph.txt").read_text(), hypothesis) <= 0.08


def test_captions_switched_off_transcribes_anyway(tmp_path: Path) -> None:
    with serve_media() as server:
        params = {"url": server.url("page.html"), "captions": False, "diarize": False}
        ctx = context(tmp_path, "youtube", [], ModelCache(), params, allow_private_urls=True)
        result = YoutubeProcessor().process(ctx)
    assert result.metadata["transcript_source"] == "transcription"
    assert "/conversation.vtt" not in server.paths
    assert result.segments and all(s["speaker"] is None for s in result.segments)


def test_private_address_is_refused_without_allow_private(tmp_path: Path) -> None:
    with serve_media() as server, pytest.raises(BadInput, match="loopback") as caught:
        _run(tmp_path, server.url("page.html"), ModelCache())
    assert not caught.value.retryable
    assert server.paths == [], "a refused URL must not be fetched at all"


def test_redirect_to_a_refused_address_is_bad_input(tmp_path: Path) -> None:
    with serve_media() as server, serve_media("127.0.0.2") as other:
        server.redirects["/jump.mp4"] = other.url("paragraph.ogg", host="127.0.0.2")
        with pytest.raises(BadInput, match=r"127\.0\.0\.2"):
            _run(tmp_path, server.url("jump.mp4"), ModelCache(), url_allow_list="127.0.0.1")
        assert other.paths == [], "the refused address was contacted"
    assert "/jump.mp4" in server.paths


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/x.mp3", ""])
def test_non_http_urls_are_bad_input(tmp_path: Path, url: str) -> None:
    with pytest.raises(BadInput):
        _run(tmp_path, url, ModelCache(), allow_private_urls=True)


def test_media_larger_than_the_download_limit(tmp_path: Path) -> None:
    with serve_media() as server, pytest.raises(BadInput, match="larger than 10000 bytes"):
        _run(
            tmp_path,
            server.url("page_nocaptions.html"),
            ModelCache(),
            allow_private_urls=True,
            max_download_bytes=10000,
        )


def test_rolling_automatic_captions_are_deduplicated() -> None:
    vtt = (
        "WEBVTT\n\n00:00:01.000 --> 00:00:02.500\nhello <c>there</c>\n\n"
        "00:00:02.500 --> 00:00:04.000\nhello there\nhow are you\n\n"
        "1:00:00.000 --> 1:00:01.000\n<v Ann>fine</v>\n"
    )
    segments = parse_captions(vtt)
    assert [s["text"] for s in segments] == ["hello there", "how are you", "fine"]
    assert segments[1]["start"] == 2.5 and segments[2]["start"] == 3600.0


@pytest.mark.parametrize("protocol", ["rtmp", "rtsp", "mms", "https+f4m"])
def test_formats_only_an_external_program_fetches_are_refused(protocol: str) -> None:
    with pytest.raises(BadInput, match="not fetched here"):
        _check_protocol({"protocol": protocol})
    for native in ("https", "http", "m3u8_native", "http_dash_segments+https"):
        _check_protocol({"protocol": native})
