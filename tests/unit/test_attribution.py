"""Words to speakers: overlap with the turns, zero-length words, segment invariants.

Hand-made Whisper output and turns, shaped like what tiny.en produces at turn edges on the
generated conversations (a word's end running 0.1-0.3 s into the next turn, the first word
after a pause stamped with zero duration at the start of the word after it).
"""

from __future__ import annotations

from typing import Any

from morag_worker.processors.attribution import assign_speakers, violations
from morag_worker.processors.diarize import Turn


def w(word: str, start: float, end: float) -> dict[str, Any]:
    return {"word": f" {word}", "start": start, "end": end, "probability": 0.9}


def whisper_segment(*words: dict[str, Any]) -> dict[str, Any]:
    text = "".join(x["word"] for x in words).strip()
    return {"start": words[0]["start"], "end": words[-1]["end"], "text": text, "words": list(words)}


TURNS = [Turn(0.4, 5.25, "SPEAKER_1"), Turn(5.25, 10.9, "SPEAKER_2")]


def spoken(segments: list[dict[str, Any]]) -> list[tuple[str | None, str]]:
    return [(s["speaker"], s["text"]) for s in segments]


def test_a_zero_length_first_word_goes_with_the_word_after_it() -> None:
    # "The" is stamped 5.57-5.57, inside SPEAKER_2's turn but 0.32 s from both edges:
    # it once went to SPEAKER_1 and came out as a segment of its own, 5.57-5.57.
    seg = whisper_segment(w("Yes.", 4.6, 5.29), w("The", 5.57, 5.57), w("project", 5.57, 6.01))
    out = assign_speakers([seg], TURNS)
    assert spoken(out) == [("SPEAKER_1", "Yes."), ("SPEAKER_2", "The project")]
    assert violations(out) == []


def test_the_last_word_stays_with_its_turn_when_its_end_runs_over() -> None:
    seg = whisper_segment(w("Right,", 4.2, 4.5), w("agree.", 4.9, 5.45), w("Maybe", 5.6, 5.9))
    assert spoken(assign_speakers([seg], TURNS)) == [
        ("SPEAKER_1", "Right, agree."),
        ("SPEAKER_2", "Maybe"),
    ]


def test_equal_overlap_goes_to_the_turn_nearest_the_word_middle() -> None:
    # The word 5.0-5.5 overlaps both turns by 0.25 s: the tie falls to the turn whose
    # middle is nearer the word's middle (5.25).
    turns = [Turn(0.4, 5.25, "SPEAKER_1"), Turn(5.25, 7.0, "SPEAKER_2")]
    out = assign_speakers([whisper_segment(w("so", 5.0, 5.5))], turns)
    assert out[0]["speaker"] == "SPEAKER_2"  # turn middle 6.125 is nearer than 2.825
    out = assign_speakers([whisper_segment(w("so", 5.0, 5.5))], TURNS)
    assert out[0]["speaker"] == "SPEAKER_1"  # 2.825 vs 8.075


def test_a_word_in_a_pause_goes_to_the_nearest_turn() -> None:
    turns = [Turn(0.0, 2.0, "SPEAKER_1"), Turn(3.0, 5.0, "SPEAKER_2")]
    out = assign_speakers([whisper_segment(w("uh", 2.6, 2.8))], turns)
    assert out[0]["speaker"] == "SPEAKER_2"


def test_a_segment_without_duration_joins_its_neighbour() -> None:
    first = whisper_segment(w("Good", 1.0, 1.3), w("idea.", 1.3, 1.8))
    empty = whisper_segment(w("Okay.", 8.22, 8.22))
    out = assign_speakers([first, empty], [Turn(0.0, 2.0, "SPEAKER_1")])
    assert spoken(out) == [("SPEAKER_1", "Good idea. Okay.")]
    assert (out[0]["start"], out[0]["end"]) == (1.0, 1.8)
    assert violations(out) == []


def test_a_transcript_of_one_zero_length_word_still_has_a_duration() -> None:
    out = assign_speakers([whisper_segment(w("Hi.", 3.0, 3.0))], [Turn(2.0, 4.0, "SPEAKER_1")])
    assert spoken(out) == [("SPEAKER_1", "Hi.")]
    assert out[0]["end"] > out[0]["start"] == 3.0
    assert violations(out) == []


def test_invariants_hold_and_no_word_is_lost_on_a_messy_transcript() -> None:
    segments = [
        whisper_segment(w("a", 0.5, 0.9), w("b", 0.9, 0.9), w("c", 1.2, 2.6)),
        whisper_segment(w("d", 2.5, 2.5), w("e", 2.5, 2.5)),
        whisper_segment(w("f", 2.4, 3.1), w("g", 3.0, 3.9), w("h", 5.0, 5.0)),
    ]
    turns = [Turn(0.0, 2.0, "SPEAKER_1"), Turn(2.0, 3.5, "SPEAKER_2"), Turn(3.5, 6, "SPEAKER_1")]
    out = assign_speakers(segments, turns)
    assert violations(out) == []
    words = [x["word"] for s in out for x in s["words"]]
    assert words == [x["word"] for s in segments for x in s["words"]]


def test_without_turns_segments_keep_whisper_boundaries_and_no_speaker() -> None:
    segments = [whisper_segment(w("a", 0.5, 0.9)), whisper_segment(w("b", 1.5, 1.9))]
    out = assign_speakers(segments, [])
    assert spoken(out) == [(None, "a"), (None, "b")]


def test_violations_name_each_broken_invariant() -> None:
    segments = [
        {"start": 8.22, "end": 8.22, "speaker": "S1", "text": "x", "words": []},
        {"start": 8.0, "end": 9.0, "speaker": "S2", "text": "y", "words": []},
        {"start": 8.5, "end": 9.5, "speaker": "S2", "text": "z", "words": []},
    ]
    assert violations(segments) == [
        "segment 0 (8.22-8.22): end is not after start",
        "segment 1 (8.0-9.0): starts before segment 0",
        "segment 2 (8.5-9.5): overlaps segment 1 of S2",
    ]


def test_a_segment_without_words_keeps_its_text_when_a_piece_joins_it() -> None:
    plain = {"start": 1.0, "end": 2.0, "text": "No word times here.", "words": []}
    empty = whisper_segment(w("Okay.", 0.5, 0.5))
    out = assign_speakers([empty, plain], [Turn(0.0, 3.0, "SPEAKER_1")])
    assert spoken(out) == [("SPEAKER_1", "Okay. No word times here.")]
    assert violations(out) == []


def test_the_word_speaker_metric_counts_edges_and_ignores_misheard_words() -> None:
    from speech_metrics import word_speaker_accuracy

    truth = [{"speaker": "A", "text": "Hello there."}, {"speaker": "B", "text": "Good morning."}]
    said = [
        {"speaker": "x", "words": [w("Hello", 0, 1)]},
        {"speaker": "y", "words": [w("there.", 1, 2), w("Good", 2, 3), w("mourning.", 3, 4)]},
    ]
    # "mourning" was misheard: left out. "there." (an edge word) has the wrong speaker.
    assert word_speaker_accuracy(truth, said) == (2 / 3, 1 / 2, 2)
