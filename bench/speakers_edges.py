"""Turn edges and long recordings for ``bench/speakers.py`` (see its docstring)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import gen_conversations as gen
import numpy as np
from speakers_methods import elbow
from speech_metrics import speaker_accuracy, word_error_rate, word_speaker_accuracy

from morag_worker.models.cache import ModelCache
from morag_worker.models.whisper import FasterWhisperTranscriber, resolve_ct2
from morag_worker.processors import attribution, diarize, speakers
from morag_worker.processors.media import SAMPLE_RATE


def old_assign(segments: list[dict[str, Any]], turns: list[Any]) -> list[dict[str, Any]]:
    """Word assignment before this change: most overlap, else the turn whose nearest edge
    is nearest; a speaker change splits the Whisper segment (zero-length words included)."""

    def speaker_at(start: float, end: float) -> str:
        overlaps = [max(0.0, min(end, t.end) - max(start, t.start)) for t in turns]
        best = int(np.argmax(overlaps))
        if overlaps[best] > 0:
            return str(turns[best].speaker)
        middle = (start + end) / 2
        gaps = [min(abs(middle - t.start), abs(middle - t.end)) for t in turns]
        return str(turns[int(np.argmin(gaps))].speaker)

    out: list[dict[str, Any]] = []
    for seg in segments:
        group: list[dict[str, Any]] = []
        current = None
        for word in seg["words"]:
            speaker = speaker_at(word["start"], word["end"])
            if group and speaker != current:
                out.append(_piece(group, current))
                group = []
            group.append(word)
            current = speaker
        out.append(_piece(group, current))
    return out


def _piece(words: list[dict[str, Any]], speaker: str | None) -> dict[str, Any]:
    text = "".join(w["word"] for w in words).strip()
    return {"start": words[0]["start"], "end": words[-1]["end"], "speaker": speaker,
            "text": text, "words": words}  # fmt: skip


def old_turns(audio: np.ndarray, regions: list[Any], cache: ModelCache, k: int | None) -> list:
    """Turns before this change: window labels merged, no edge refinement, elbow count."""
    encoder = diarize._encoder(cache, "cpu")
    windows = diarize._windows(regions)
    clips = [audio[int(a * SAMPLE_RATE) : int(b * SAMPLE_RATE)] for a, b, *_ in windows]
    vectors = diarize._embed(encoder, clips)
    labels = speakers.kmeans(vectors, k or elbow(vectors, 0.03))[0]
    cores = [(c0, c1, int(label)) for (_a, _b, c0, c1), label in zip(windows, labels, strict=True)]
    names = diarize._names_by_appearance(cores)
    return diarize._merge([diarize.Turn(s, e, names[label]) for s, e, label in cores])


def _scores(c: gen.Conversation, turns: list[Any], segments: list[dict[str, Any]]) -> list[float]:
    words, edges, _count = word_speaker_accuracy([t.__dict__ for t in c.turns], segments)
    raw = speaker_accuracy(c.truth(), [t.__dict__ for t in turns])
    zero = sum(s["end"] <= s["start"] for s in segments)
    return [raw, words, edges, zero, len(attribution.violations(segments))]


def part_edges(count: int) -> None:
    """Before/after table of word speakers at turn edges on ``count`` conversations."""
    transcriber = FasterWhisperTranscriber(resolve_ct2("tiny.en"), "cpu", "int8")
    cache = ModelCache()
    rows: dict[str, list[list[float]]] = {}
    edge_words = 0
    for n in range(count):
        voices, similarity = 2 + n % 2, gen.SIMILARITIES[n // 2 % 3]
        c = gen.conversation(2000 + n, voices, similarity, pool="test")
        segments = transcriber.transcribe(c.audio, language="en", beam_size=5).segments
        regions = diarize.speech_regions(c.audio)
        edge_words += word_speaker_accuracy([t.__dict__ for t in c.turns], segments_of(segments))[2]
        for given in (True, False):
            k = voices if given else None
            before = old_turns(c.audio, regions, cache, k)
            after = diarize.resemblyzer_turns(c.audio, regions, cache, "cpu", k)
            tag = "count given" if given else "estimated"
            rows.setdefault(f"before, {tag}", []).append(
                _scores(c, before, old_assign(segments, before))
            )
            rows.setdefault(f"after, {tag}", []).append(
                _scores(c, after, attribution.assign_speakers(segments, after))
            )
    print(f"\nTurn edges: {count} conversations of 2-3 voices, {edge_words} edge words recognised")
    print(f"{'':<24} {'turns':>6} {'words':>6} {'edges':>6} {'zero-length':>11} {'broken':>6}")
    for name, values in rows.items():
        mean = np.mean(values, axis=0)
        total = np.sum(values, axis=0)
        print(f"{name:<24} {mean[0]:6.3f} {mean[1]:6.3f} {mean[2]:6.3f} "
              f"{int(total[3]):11d} {int(total[4]):6d}")  # fmt: skip
    print("turns: speech time right in the diarizer's own turns (the raw model); words, edges:")
    print("recognised words (all; first/last of turns) given the right speaker; zero-length:")
    print("segments whose end is not after their start; broken: contract violations.")


def segments_of(segments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Whisper segments with a dummy speaker, to count the recognised edge words."""
    return [{**s, "speaker": "S"} for s in segments]


def part_long() -> None:
    """One 10-minute conversation: raw Whisper (the baseline), then the audio pipeline with
    the count given and estimated. RTF from CPU seconds (the process runs one thread, so
    on an idle machine they equal wall seconds; on a shared one they are the honest
    figure) and from wall seconds."""
    from speech_support import context, tiny_en

    from morag_worker.processors.audio import Timings, transcribe_audio

    c = gen.long_conversation(7, 10.0)
    minutes = c.duration_s / 60
    print(f"\nLong recording: {minutes:.1f} min, {len(c.turns)} turns, 2 voices, tiny.en int8")
    print(f"{'run':<20} {'RTF cpu':>8} {'RTF wall':>8} {'vs raw':>7} {'diarize s':>9} "
          f"{'WER':>6} {'words':>6} {'last end':>8} {'broken':>6}")  # fmt: skip
    transcriber = FasterWhisperTranscriber(Path(tiny_en()), "cpu", "int8")
    cpu, wall = time.process_time(), time.perf_counter()
    raw = transcriber.transcribe(c.audio, language=None, beam_size=5).segments
    raw_cpu = time.process_time() - cpu
    wer = word_error_rate(c.script, " ".join(s["text"] for s in raw))
    print(f"{'raw faster-whisper':<20} {raw_cpu / c.duration_s:8.3f} "
          f"{(time.perf_counter() - wall) / c.duration_s:8.3f} {1:7.2f} {'-':>9} {wer:6.1%} "
          f"{'-':>6} {raw[-1]['end']:8.1f} {'-':>6}")  # fmt: skip
    cache = ModelCache()
    for params in ({"num_speakers": 2}, {}):
        ctx = context(Path("/tmp"), "audio", [], cache, params)
        transcribe_audio(ctx, c.audio[: 5 * SAMPLE_RATE], "warm-up", {}, Timings())
        cpu, wall = time.process_time(), time.perf_counter()
        result = transcribe_audio(ctx, c.audio, "long", {}, Timings())
        spent_cpu, spent = time.process_time() - cpu, time.perf_counter() - wall
        segments = result.segments or []
        wer = word_error_rate(c.script, " ".join(s["text"] for s in segments))
        words = word_speaker_accuracy([t.__dict__ for t in c.turns], segments)[0]
        name = "pipeline, " + ("2 given" if params else "estimated")
        print(f"{name:<20} {spent_cpu / c.duration_s:8.3f} {spent / c.duration_s:8.3f} "
              f"{spent_cpu / raw_cpu:7.2f} {result.metadata['timings_s']['diarize']:9.1f} "
              f"{wer:6.1%} {words:6.3f} {segments[-1]['end']:8.1f} "
              f"{len(attribution.violations(segments)):6d}")  # fmt: skip
    print(f"(true speech ends at {c.turns[-1].end:.1f} s; RTF: seconds per second of audio)")
