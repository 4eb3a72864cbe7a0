"""VAD, speaker clustering and word-to-speaker assignment on the generated conversation."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("faster_whisper", reason="pip install morag-worker[audio]")
pytest.importorskip("resemblyzer", reason="pip install morag-worker[audio]")

from speech_metrics import speaker_accuracy, word_error_rate
from speech_support import MEDIA, true_turns

from morag_worker.errors import ModelMissing
from morag_worker.models.cache import ModelCache
from morag_worker.processors import attribution, diarize
from morag_worker.processors.media import decode_audio


@pytest.fixture(scope="module")
def conversation() -> np.ndarray:
    return decode_audio(MEDIA / "conversation.ogg", max_duration_s=60)


@pytest.fixture(scope="module")
def cache() -> ModelCache:
    return ModelCache()


def test_vad_finds_every_turn_and_no_gap(conversation: np.ndarray) -> None:
    regions = diarize.speech_regions(conversation)
    truth = true_turns()
    for turn in truth:
        covered = sum(max(0.0, min(e, turn["end"]) - max(s, turn["start"])) for s, e in regions)
        assert covered >= 0.9 * (turn["end"] - turn["start"]), turn
    for before, after in itertools.pairwise(truth):
        middle = (before["end"] + after["start"]) / 2
        assert not any(s < middle - 0.15 and middle + 0.15 < e for s, e in regions), middle
    assert diarize.speech_regions(np.zeros(16000 * 3, dtype=np.float32)) == []


@pytest.mark.parametrize("num_speakers", [2, None], ids=["given", "estimated"])
def test_speech_time_goes_to_the_right_speaker(
    conversation: np.ndarray, cache: ModelCache, num_speakers: int | None
) -> None:
    regions = diarize.speech_regions(conversation)
    turns = diarize.resemblyzer_turns(conversation, regions, cache, "cpu", num_speakers)
    assert {t.speaker for t in turns} == {"SPEAKER_1", "SPEAKER_2"}
    assert turns[0].speaker == "SPEAKER_1", "labels follow the order of appearance"
    accuracy = speaker_accuracy(true_turns(), [t.__dict__ for t in turns])
    assert accuracy >= 0.9, accuracy


def test_one_voice_is_estimated_as_one_speaker(cache: ModelCache) -> None:
    audio = decode_audio(MEDIA / "paragraph.ogg", max_duration_s=60)
    turns = diarize.resemblyzer_turns(audio, diarize.speech_regions(audio), cache, "cpu", None)
    assert {t.speaker for t in turns} == {"SPEAKER_1"}


def test_encoder_is_loaded_once_per_cache(conversation: np.ndarray) -> None:
    own = ModelCache()
    regions = diarize.speech_regions(conversation)[:3]
    for _ in range(2):
        diarize.resemblyzer_turns(conversation, regions, own, "cpu", 2)
    assert (own.stats.misses, own.stats.hits) == (1, 1)


def test_words_are_split_at_a_speaker_change() -> None:
    words = [
        {"start": 0.0, "end": 0.4, "word": " Hello", "probability": 0.9},
        {"start": 0.5, "end": 0.9, "word": " there.", "probability": 0.9},
        {"start": 1.3, "end": 1.7, "word": " Hi!", "probability": 0.9},
    ]
    segments = [{"start": 0.0, "end": 1.7, "text": "Hello there. Hi!", "words": words}]
    turns = [diarize.Turn(0.0, 1.0, "SPEAKER_1"), diarize.Turn(1.2, 2.0, "SPEAKER_2")]
    out = attribution.assign_speakers(segments, turns)
    assert [(s["speaker"], s["text"], s["start"], s["end"]) for s in out] == [
        ("SPEAKER_1", "Hello there.", 0.0, 0.9),
        ("SPEAKER_2", "Hi!", 1.3, 1.7),
    ]
    # A word in a pause takes the nearest turn's speaker.
    lone = [{"start": 2.5, "end": 2.7, "text": "Bye", "words": []}]
    assert attribution.assign_speakers(lone, turns)[0]["speaker"] == "SPEAKER_2"


def test_pyannote_unavailable_locally_is_model_missing(
    conversation: np.ndarray, tmp_path: Path
) -> None:
    with pytest.raises(ModelMissing, match="pyannote"):
        diarize.pyannote_turns(conversation, str(tmp_path / "none.yaml"), ModelCache(), "cpu", 2)


def test_metrics_are_computed_right() -> None:
    assert word_error_rate("the cat sat", "the cat sat") == 0.0
    assert word_error_rate("the cat sat on 10 mats", "a cat sat on ten mats") == pytest.approx(
        1 / 6
    )
    assert word_error_rate("one two", "one two three four") == 1.0
    truth = [{"start": 0, "end": 2, "speaker": "A"}, {"start": 2, "end": 4, "speaker": "B"}]
    swapped = [{"start": 0, "end": 2, "speaker": "x"}, {"start": 2, "end": 3, "speaker": "y"}]
    assert speaker_accuracy(truth, swapped) == pytest.approx(0.75)
    assert speaker_accuracy(truth, [{"start": 0, "end": 4, "speaker": "x"}]) == 0.5


def test_preload_loads_the_encoder_for_the_first_task(conversation: np.ndarray) -> None:
    own = ModelCache()
    diarize.preload(own, "cpu")
    assert own.contents() == ["resemblyzer:builtin:cpu:float32"]
    diarize.resemblyzer_turns(conversation, diarize.speech_regions(conversation)[:2], own, "cpu", 2)
    assert (own.stats.misses, own.stats.hits) == (1, 1)
