"""Words to speakers: Whisper's words are given the speaker of the turn they overlap most.

:func:`assign_speakers` turns Whisper segments and diarization turns into speaker
segments ``{start, end, speaker, text, words}`` with this contract (checked by
:func:`violations`):

- every Whisper word comes out exactly once, in order, with Whisper's text;
- a segment has one speaker; Whisper segments are split where the speaker changes;
- every segment ends after it starts, segments start in order, and the segments of one
  speaker never overlap.

How words are placed, and why:

1. Word times are made monotonic: a word starts no earlier than the word before it, and a
   word's end is cut at the next word's start. Whisper's word ends run late (0.1-0.3 s
   into the next turn with tiny.en on the generated conversations); its starts are the
   better anchor.
2. A word that still has no duration (Whisper stamps the first word after a pause with
   the start of the word after it, such as ``The[5.57-5.57] project[5.57-6.01]``, and
   sometimes gives a word no place at all) says nothing about where it was spoken: it
   takes the speaker of the nearest word with a duration in the same Whisper segment, the
   following one on a tie. It never starts a segment of its own.
3. Any other word goes to the turn it overlaps most; a tie goes to the nearest turn
   (0 s for every turn the word overlaps), then to the turn whose middle is nearest the
   word's middle. A word in a pause between turns thus goes to the nearer turn.
4. A piece of a segment that spans no time (all its words without duration) joins the
   neighbouring segment nearest to its time stamp, the earlier one on a tie, and takes
   its speaker. A transcript that is nothing but such a piece is given ``MIN_SPAN_S``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from morag_worker.processors.turn_edges import Turn

#: Duration given to a segment that spans no time and has no neighbour to join: Whisper's
#: time stamps come in steps of 20 ms, so a word it gave no duration lasted less.
MIN_SPAN_S = 0.02


@dataclass
class _Piece:
    """Consecutive words of one Whisper segment with one speaker."""

    speaker: str | None
    words: list[dict[str, Any]] = field(default_factory=list)
    start: float = 0.0
    end: float = 0.0
    text: str = ""

    def as_segment(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "speaker": self.speaker,
            "text": self.text,
            "words": self.words,
        }


def assign_speakers(segments: list[dict[str, Any]], turns: list[Turn]) -> list[dict[str, Any]]:
    """Speaker segments from Whisper ``segments`` and diarization ``turns`` (see module).

    Without turns every segment keeps Whisper's boundaries with speaker ``None``.
    """
    segments = [{**seg, "words": [dict(w) for w in seg.get("words") or []]} for seg in segments]
    _make_monotonic([w for seg in segments for w in seg["words"]])
    finder = _TurnFinder(turns)
    pieces: list[_Piece] = []
    for seg in segments:
        words = seg["words"]
        if not words:
            speaker = finder.speaker(seg["start"], seg["end"])
            pieces.append(_Piece(speaker, [], seg["start"], seg["end"], seg["text"]))
            continue
        pieces += _split(words, _word_speakers(words, finder))
    return [p.as_segment() for p in _absorb_empty(pieces)]


def _make_monotonic(words: list[dict[str, Any]]) -> None:
    """Rule 1, in place: starts never go back; an end never passes the next start."""
    for before, after in itertools.pairwise(words):
        after["start"] = max(after["start"], before["start"])
        before["end"] = max(before["start"], min(before["end"], after["start"]))
    for word in words:
        word["end"] = max(word["end"], word["start"])


def _word_speakers(words: list[dict[str, Any]], finder: _TurnFinder) -> list[str | None]:
    """Rules 2 and 3 for the words of one Whisper segment."""
    timed = [i for i, w in enumerate(words) if w["end"] > w["start"]]
    speakers: list[str | None] = [None] * len(words)
    for i in timed:
        speakers[i] = finder.speaker(words[i]["start"], words[i]["end"])
    for i, word in enumerate(words):
        if word["end"] > word["start"]:
            continue
        if not timed:
            speakers[i] = finder.speaker(word["start"], word["end"])
            continue
        # Nearest timed word by time; on a tie the following word (sorted after).
        nearest = min(timed, key=lambda j: (_gap(words[j], word), j < i))
        speakers[i] = speakers[nearest]
    return speakers


def _gap(a: dict[str, Any], b: dict[str, Any]) -> float:
    return max(0.0, a["start"] - b["end"], b["start"] - a["end"])


def _split(words: list[dict[str, Any]], speakers: list[str | None]) -> list[_Piece]:
    pieces: list[_Piece] = []
    for word, speaker in zip(words, speakers, strict=True):
        if not pieces or pieces[-1].speaker != speaker:
            pieces.append(_Piece(speaker, start=word["start"]))
        pieces[-1].words.append(word)
        pieces[-1].end = word["end"]
    for piece in pieces:
        piece.text = "".join(w["word"] for w in piece.words).strip()
    return pieces


def _absorb_empty(pieces: list[_Piece]) -> list[_Piece]:
    """Rule 4: pieces that span no time join their nearest neighbour."""
    out = [p for p in pieces if p.end > p.start]
    if not out:
        if not pieces:
            return []
        whole = _Piece(pieces[0].speaker, start=pieces[0].start, end=pieces[0].start + MIN_SPAN_S)
        whole.words = [w for p in pieces for w in p.words]
        whole.text = " ".join(p.text for p in pieces if p.text)
        return [whole]
    kept = 0  # index into out of the next piece with a span
    for piece in pieces:
        if piece.end > piece.start:
            kept += 1
            continue
        before = out[kept - 1] if kept else None
        after = out[kept] if kept < len(out) else None
        if after is not None and (
            before is None or after.start - piece.start < piece.start - before.end
        ):
            after.words[:0] = piece.words
            after.text = " ".join(t for t in (piece.text, after.text) if t)
        elif before is not None:
            before.words += piece.words
            before.text = " ".join(t for t in (before.text, piece.text) if t)
    return out


class _TurnFinder:
    """Rule 3 over turns sorted by start, vectorised with numpy."""

    def __init__(self, turns: list[Turn]) -> None:
        ordered = sorted(turns, key=lambda t: t.start)
        self.starts = np.array([t.start for t in ordered], dtype=float)
        self.ends = np.array([t.end for t in ordered], dtype=float)
        self.names = [t.speaker for t in ordered]

    def speaker(self, start: float, end: float) -> str | None:
        if not self.names:
            return None
        overlap = np.clip(np.minimum(end, self.ends) - np.maximum(start, self.starts), 0, None)
        middle = (start + end) / 2
        distance = np.clip(np.maximum(self.starts - end, start - self.ends), 0, None)
        to_middle = np.abs((self.starts + self.ends) / 2 - middle)
        best = np.lexsort((to_middle, distance, -overlap))[0]
        return self.names[int(best)]


def violations(segments: list[dict[str, Any]]) -> list[str]:
    """The broken points of the contract above, one line each (empty when it holds)."""
    problems = []
    last: dict[Any, tuple[int, float]] = {}
    for n, seg in enumerate(segments):
        start, end = seg["start"], seg["end"]
        where = f"segment {n} ({start}-{end})"
        if not end > start:
            problems.append(f"{where}: end is not after start")
        if n and start < segments[n - 1]["start"]:
            problems.append(f"{where}: starts before segment {n - 1}")
        speaker = seg.get("speaker")
        if speaker in last and start < last[speaker][1]:
            problems.append(f"{where}: overlaps segment {last[speaker][0]} of {speaker}")
        last[speaker] = (n, end)
    return problems
