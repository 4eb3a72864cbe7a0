"""Video tasks: metadata from the container, the audio track through the speech pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("faster_whisper", reason="pip install morag-worker[audio,video]")
pytest.importorskip("resemblyzer", reason="pip install morag-worker[audio,video]")

from speech_metrics import speaker_accuracy, word_error_rate
from speech_support import MEDIA, context, true_turns

from morag_worker.errors import BadInput
from morag_worker.models.cache import ModelCache
from morag_worker.processors.video import VideoProcessor


def test_video_with_speech(tmp_path: Path) -> None:
    ctx = context(
        tmp_path, "video", [MEDIA / "conversation.mp4"], ModelCache(), {"num_speakers": 2}
    )
    result = VideoProcessor().process(ctx)
    meta = result.metadata
    assert meta["has_audio"] is True
    assert meta["resolution"] == "160x120"
    assert meta["video_streams"][0]["codec"] == "mpeg4"
    assert meta["audio_streams"][0]["codec"] == "aac"
    assert meta["duration_s"] == pytest.approx(27.4, abs=0.5)
    assert result.segments
    reference = " ".join(t["text"] for t in true_turns())
    hypothesis = " ".join(s["text"] for s in result.segments)
    # Two synthetic voices through AAC at 32 kbit/s: tiny.en makes more errors than on the
    # clean paragraph, but the words are overwhelmingly right.
    assert word_error_rate(reference, hypothesis) <= 0.2, hypothesis
    assert speaker_accuracy(true_turns(), result.segments) >= 0.9
    assert result.content.startswith("# conversation.mp4\n")
    assert "- Resolution: 160x120" in result.content and "SPEAKER_2" in result.content
    assert result.chunks


def test_video_without_audio_completes_with_metadata(tmp_path: Path) -> None:
    cache = ModelCache()
    result = VideoProcessor().process(
        context(tmp_path, "video", [MEDIA / "silent_video.mp4"], cache)
    )
    assert result.metadata["has_audio"] is False
    assert result.metadata["resolution"] == "160x120"
    assert result.metadata["duration_s"] == pytest.approx(2.0, abs=0.1)
    assert "no audio track" in result.content
    assert result.segments is None and result.chunks == []
    assert cache.stats.misses == 0, "no model is loaded for a video without audio"


def test_truncated_video_is_bad_input(tmp_path: Path) -> None:
    data = (MEDIA / "conversation.mp4").read_bytes()
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(data[: len(data) // 3])
    with pytest.raises(BadInput, match=r"broken\.mp4"):
        VideoProcessor().process(context(tmp_path, "video", [broken], ModelCache()))


def test_video_longer_than_the_limit_is_refused_before_decoding(tmp_path: Path) -> None:
    cache = ModelCache()
    ctx = context(tmp_path, "video", [MEDIA / "conversation.mp4"], cache, max_media_duration_s=5.0)
    with pytest.raises(BadInput, match="longer than the limit"):
        VideoProcessor().process(ctx)
    assert cache.stats.misses == 0
