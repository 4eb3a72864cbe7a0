"""Speech that Whisper skipped, transcribed again on its own.

Whisper decodes 30-second windows and moves on by the last timestamp it predicted;
conditioned on its own previous text, it sometimes jumps over several seconds of clear
speech (a window whose timestamps run ahead), and those words never reach the
transcript. The voice-activity regions say where speech is, so a span of speech that
no segment covers is a skip: :func:`fill_gaps` transcribes each such span alone (no
earlier text to follow, the span's own timeline) and puts its segments in place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from morag_worker.models.whisper import Transcript
from morag_worker.processors.media import SAMPLE_RATE

#: Uncovered speech shorter than this is a pause inside a segment or VAD padding, not a
#: skip: Whisper's segments leave such slivers between them all the time.
MIN_GAP_S = 2.0
#: Audio taken on each side of a gap, so that the words at its edges are whole.
PAD_S = 0.15

Segment = dict[str, Any]


class Transcriber(Protocol):
    def transcribe(
        self,
        audio: np.ndarray,
        *,
        language: str | None,
        beam_size: int,
        on_segment: Callable[[float], None] | None = None,
    ) -> Transcript: ...


def uncovered(
    regions: list[tuple[float, float]], segments: list[Segment], min_gap_s: float = MIN_GAP_S
) -> list[tuple[float, float]]:
    """Spans of speech (``regions``) that no segment overlaps, ``min_gap_s`` or longer."""
    covered = sorted((s["start"], s["end"]) for s in segments if s["end"] > s["start"])
    gaps = []
    for start, end in regions:
        cursor = start
        for seg_start, seg_end in covered:
            if seg_end <= cursor or seg_start >= end:
                continue
            if seg_start > cursor:
                gaps.append((cursor, seg_start))
            cursor = max(cursor, seg_end)
        if cursor < end:
            gaps.append((cursor, end))
    return [(a, b) for a, b in gaps if b - a >= min_gap_s]


def fill_gaps(
    transcriber: Transcriber,
    audio: np.ndarray,
    regions: list[tuple[float, float]],
    transcript: Transcript,
    *,
    language: str | None,
    beam_size: int,
    on_segment: Callable[[float], None] | None = None,
) -> tuple[Transcript, float]:
    """The transcript with every skipped span of speech transcribed; also the seconds of
    speech that were transcribed again (0.0 when Whisper skipped nothing)."""
    gaps = uncovered(regions, transcript.segments)
    added: list[Segment] = []
    for start, end in gaps:
        first = max(0, int((start - PAD_S) * SAMPLE_RATE))
        last = min(len(audio), int((end + PAD_S) * SAMPLE_RATE))
        again = transcriber.transcribe(
            audio[first:last],
            language=language or transcript.language,
            beam_size=beam_size,
            on_segment=on_segment,
        )
        offset = first / SAMPLE_RATE
        added += [s for s in (_placed(seg, offset, start, end) for seg in again.segments) if s]
    if not added:
        return transcript, round(sum(b - a for a, b in gaps), 3)
    segments = sorted(transcript.segments + added, key=lambda s: (s["start"], s["end"]))
    filled = Transcript(transcript.language, transcript.language_probability, segments)
    return filled, round(sum(b - a for a, b in gaps), 3)


def _placed(seg: Segment, offset: float, start: float, end: float) -> Segment | None:
    """A segment of a gap's transcript moved onto the recording's timeline, keeping only
    the words whose middle lies in the gap (the padding belongs to its neighbours)."""
    words = []
    for word in seg.get("words", []):
        w_start, w_end = word["start"] + offset, word["end"] + offset
        if start <= (w_start + w_end) / 2 <= end:
            words.append(
                {
                    **word,
                    "start": round(min(max(w_start, start), end), 3),
                    "end": round(min(max(w_end, start), end), 3),
                }
            )
    if seg.get("words") and not words:
        return None
    s_start = words[0]["start"] if words else max(seg["start"] + offset, start)
    s_end = words[-1]["end"] if words else min(seg["end"] + offset, end)
    if s_end <= s_start:
        return None
    text = "".join(w["word"] for w in words).strip() if words else seg["text"]
    return {"start": round(s_start, 3), "end": round(s_end, 3), "text": text, "words": words}
