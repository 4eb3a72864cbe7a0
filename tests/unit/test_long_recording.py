"""A 10-minute recording through the audio task: timestamps stay in order, the transcript
reaches the end, the words match the script. Generated at test time (two voices, 100-odd
turns) from ``tests/fixtures/gen_conversations.py``; the speed is measured by
``bench/speakers.py --part long`` and reported in ``docs/speech.md``, never asserted."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("faster_whisper", reason="pip install morag-worker[audio]")
pytest.importorskip("resemblyzer", reason="pip install morag-worker[audio]")

from speech_metrics import word_error_rate, word_speaker_accuracy
from speech_support import context, conversations, write_wav

from morag_worker.models.cache import ModelCache
from morag_worker.processors.attribution import violations
from morag_worker.processors.audio import AudioProcessor

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def long_result(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    talk = conversations().long_conversation(7, 10.0)
    work = tmp_path_factory.mktemp("long")
    pcm = (np.clip(talk.audio, -1, 1) * 32767).astype("<i2").tobytes()
    path = write_wav(work / "ten-minutes.wav", pcm)
    result = AudioProcessor().process(context(work, "audio", [path], ModelCache()))
    return talk, result


def test_timestamps_are_monotonic_and_segments_well_formed(long_result: tuple[Any, Any]) -> None:
    _talk, result = long_result
    segments = result.segments
    assert violations(segments) == []
    words = [w for s in segments for w in s["words"]]
    starts = [w["start"] for w in words]
    assert starts == sorted(starts)
    assert all(w["end"] >= w["start"] for w in words)
    # Order is not bought by squashing: Whisper gave nearly every word a duration.
    assert sum(w["end"] == w["start"] for w in words) <= 0.05 * len(words)


def test_the_transcript_covers_the_whole_recording(long_result: tuple[Any, Any]) -> None:
    talk, result = long_result
    segments = result.segments
    assert result.metadata["duration_s"] == pytest.approx(talk.duration_s, abs=0.1)
    assert segments[0]["start"] <= talk.turns[0].start + 1.0
    assert segments[-1]["end"] >= talk.turns[-1].end - 1.5
    heard = [any(s["start"] < t.end and t.start < s["end"] for s in segments) for t in talk.turns]
    missed = [t for t, h in zip(talk.turns, heard, strict=True) if not h]
    assert len(missed) <= 0.02 * len(talk.turns), missed


def test_words_and_speakers_match_the_script(long_result: tuple[Any, Any]) -> None:
    talk, result = long_result
    text = " ".join(s["text"] for s in result.segments)
    # tiny.en on these espeak-ng voices: 14.5 % measured, the same as raw faster-whisper.
    assert word_error_rate(talk.script, text) <= 0.22
    assert result.metadata["speakers"] == ["SPEAKER_1", "SPEAKER_2"]
    words, _edges, _count = word_speaker_accuracy([t.__dict__ for t in talk.turns], result.segments)
    assert words >= 0.95
    assert result.metadata["real_time_factor"] > 0  # reported for operators, not asserted


def test_chunks_follow_the_timeline(long_result: tuple[Any, Any]) -> None:
    _talk, result = long_result
    starts = [c.start_s for c in result.chunks]
    assert starts == sorted(starts) and len(result.chunks) >= 5
    assert result.chunks[-1].end_s == pytest.approx(result.segments[-1]["end"])
