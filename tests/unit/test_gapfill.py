"""Speech Whisper skipped is transcribed again (processors/gapfill.py).

The transcriber here is a scripted stand-in, so that the skip happens on every run: the
real skip depends on the model's numerics (the 10-minute test in test_long_recording.py
runs the real one). Everything else is the production code."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from morag_worker.models.whisper import Transcript
from morag_worker.processors.attribution import violations
from morag_worker.processors.gapfill import fill_gaps, uncovered
from morag_worker.processors.media import SAMPLE_RATE


def seg(start: float, end: float, *words: tuple[float, float, str]) -> dict[str, Any]:
    listed = [{"start": a, "end": b, "word": w, "probability": 0.9} for a, b, w in words]
    return {
        "start": start,
        "end": end,
        "text": "".join(w for _, _, w in words).strip(),
        "words": listed,
    }


def test_only_speech_no_segment_covers_counts_and_only_long_spans() -> None:
    regions = [(0.0, 10.0), (12.0, 20.0)]
    segments = [seg(0.2, 3.0), seg(3.4, 4.0), seg(8.5, 10.0), seg(12.0, 20.0)]
    # 3.0-3.4 is a pause between segments; 4.0-8.5 is a skip
    assert uncovered(regions, segments) == [(4.0, 8.5)]
    assert uncovered(regions, []) == regions
    assert uncovered(regions, [seg(0.0, 20.0)]) == []


class _Scripted:
    """Answers a clip with words at fixed offsets into the clip, as Whisper would."""

    def __init__(self, answer: list[dict[str, Any]]) -> None:
        self.answer = answer
        self.clips: list[float] = []

    def transcribe(
        self,
        audio: np.ndarray,
        *,
        language: str | None,
        beam_size: int,
        on_segment: Callable[[float], None] | None = None,
    ) -> Transcript:
        self.clips.append(len(audio) / SAMPLE_RATE)
        return Transcript(language or "en", 1.0, self.answer)


def test_a_skipped_span_is_transcribed_alone_and_put_in_place() -> None:
    audio = np.zeros(30 * SAMPLE_RATE, dtype=np.float32)
    first = seg(1.0, 5.0, (1.0, 2.0, " Hello"), (2.1, 5.0, " there."))
    last = seg(14.0, 16.0, (14.0, 16.0, " Bye."))
    transcript = Transcript("en", 0.99, [first, last])
    # The clip starts PAD_S before the gap: the first word is the end of "there." again
    # (its middle lies before the gap) and is dropped; the rest lands in the gap.
    scripted = _Scripted(
        [seg(0.0, 8.0, (0.0, 0.1, " re."), (0.3, 3.0, " Skipped"), (3.2, 9.3, " words."))]
    )
    filled, redone_s = fill_gaps(
        scripted, audio, [(0.9, 16.2)], transcript, language=None, beam_size=1
    )
    assert scripted.clips == [9.3]  # 5.0-14.0 and 0.15 s on each side
    assert redone_s == 9.0
    texts = [s["text"] for s in filled.segments]
    assert texts == ["Hello there.", "Skipped words.", "Bye."]
    middle = filled.segments[1]
    assert middle["start"] == 5.15 and middle["end"] == 14.0  # clipped to the gap
    assert violations(filled.segments) == []


def test_nothing_skipped_nothing_redone() -> None:
    audio = np.zeros(10 * SAMPLE_RATE, dtype=np.float32)
    transcript = Transcript("en", 0.99, [seg(0.5, 9.5, (0.5, 9.5, " All."))])
    scripted = _Scripted([])
    filled, redone_s = fill_gaps(
        scripted, audio, [(0.4, 9.6)], transcript, language=None, beam_size=1
    )
    assert filled is transcript and redone_s == 0.0 and scripted.clips == []
