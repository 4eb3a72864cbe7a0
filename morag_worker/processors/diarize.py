"""Voice activity detection and speaker diarization; words are assigned to speakers.

VAD is Silero VAD as bundled with faster-whisper (``faster_whisper/assets/*.onnx``, run
by onnxruntime). It is the same Silero model the ``silero-vad`` wheel ships, but this copy
is the one faster-whisper's own ``vad_filter`` uses, so our speech regions and the
transcriber's agree; it needs no torch JIT, and the ``silero-vad`` wheel's audio extra
pins a torchaudio that does not match our torch.

Default diarization (``resemblyzer``, fully offline: its encoder ships in its wheel):
speech regions → 1.5 s windows every 0.75 s → speaker embeddings → spherical k-means
with the given speaker count or, without one, the count where one more cluster stops
paying → each window labels the 0.75 s around its centre → turns.
``pyannote`` runs a locally available pyannote.audio pipeline instead.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from morag_worker.errors import ModelMissing
from morag_worker.models.cache import ModelCache, ModelKey
from morag_worker.processors.media import SAMPLE_RATE

#: Window and hop for speaker embeddings: 1.5 s is about resemblyzer's 1.6 s partial
#: utterance (shorter windows make noisy embeddings); the hop bounds a turn boundary's
#: error to about ±0.4 s.
WINDOW_S = 1.5
HOP_S = 0.75
#: Speech shorter than this carries too little voice for an embedding of its own; it
#: takes the label of the nearest labelled time.
MIN_WINDOW_S = 0.5
#: Without a speaker count, one more speaker is accepted while it raises the mean
#: window-to-centroid cosine similarity by at least this much. Measured here: a second
#: real voice adds 0.06, splitting one voice adds 0.01, a third cluster on two voices 0.02.
ELBOW_GAIN = 0.03
MAX_SPEAKERS = 10
#: resemblyzer's partial utterance: 160 mel frames of 10 ms.
PARTIAL_FRAMES = 160
PARTIAL_SAMPLES = PARTIAL_FRAMES * SAMPLE_RATE // 100
#: Windows per forward pass: 64 × 1.6 s of mel frames is 2.6 MB, small on any device.
BATCH = 64


@dataclass(frozen=True)
class Turn:
    start: float
    end: float
    speaker: str


def speech_regions(audio: np.ndarray) -> list[tuple[float, float]]:
    """Speech regions of 16 kHz ``audio`` in seconds, split at pauses of 300 ms or more."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(min_silence_duration_ms=300, speech_pad_ms=100)
    stamps = get_speech_timestamps(audio, options, sampling_rate=SAMPLE_RATE)
    return [(s["start"] / SAMPLE_RATE, s["end"] / SAMPLE_RATE) for s in stamps]


def _windows(regions: list[tuple[float, float]]) -> list[tuple[float, float, float, float]]:
    """(window start, end, labelled-core start, end) for every embedding window."""
    out = []
    for start, end in regions:
        if end - start < MIN_WINDOW_S:
            continue
        if end - start <= WINDOW_S:
            out.append((start, end, start, end))
            continue
        t = start
        while t < end:
            w0 = min(t, end - WINDOW_S)
            centre = w0 + WINDOW_S / 2
            core0 = start if t == start else max(start, centre - HOP_S / 2)
            core1 = end if w0 + WINDOW_S >= end else centre + HOP_S / 2
            out.append((w0, w0 + WINDOW_S, core0, core1))
            if w0 + WINDOW_S >= end:
                break
            t += HOP_S
    return out


def _encoder(models: ModelCache, device: str) -> Any:
    def load() -> Any:
        with warnings.catch_warnings():
            # webrtcvad (a resemblyzer dependency) imports the deprecated pkg_resources;
            # the warning says nothing an operator can act on.
            warnings.simplefilter("ignore", UserWarning)
            from resemblyzer import VoiceEncoder

        return VoiceEncoder(device, verbose=False)

    return models.get(ModelKey("resemblyzer", "builtin", device, "float32"), load, 17_000_000)


def preload(models: ModelCache, device: str) -> None:
    """Load the speaker encoder and run it once, for ``--preload resemblyzer``: the first
    run also imports librosa and compiles its numba kernels, seconds a child would
    otherwise spend inside its first audio task."""
    silence_and_tone = np.sin(np.arange(PARTIAL_SAMPLES, dtype=np.float32) * 0.05) * 0.1
    _embed(_encoder(models, device), [silence_and_tone])


def _embed(encoder: Any, clips: list[np.ndarray]) -> np.ndarray:
    """Unit speaker embeddings of ``clips``, one row each, in batches of ``BATCH``.

    Each clip is tiled to the encoder's 1.6 s partial utterance: resemblyzer pads with
    zeros instead, and the silence dominated short turns (a one-second "Sounds good" went
    to the wrong speaker). With exactly one partial per clip, the batched forward pass
    equals ``embed_utterance`` (measured: within 4e-7) and is 3x faster on one CPU thread.
    """
    import torch
    from resemblyzer.audio import normalize_volume, wav_to_mel_spectrogram

    mels = []
    for clip in clips:
        clip = normalize_volume(clip, -30)
        clip = np.tile(clip, -(-PARTIAL_SAMPLES // clip.size))[:PARTIAL_SAMPLES]
        mels.append(wav_to_mel_spectrogram(clip)[:PARTIAL_FRAMES])
    batch = np.stack(mels).astype(np.float32)
    out = []
    with torch.no_grad():
        for i in range(0, len(batch), BATCH):
            frames = torch.from_numpy(batch[i : i + BATCH]).to(encoder.device)
            out.append(encoder(frames).cpu().numpy())
    return np.concatenate(out)


def _kmeans(
    x: np.ndarray, k: int, restarts: int = 10, iterations: int = 20
) -> tuple[np.ndarray, float]:
    """Spherical k-means on unit vectors, k-means++ seeding, best of ``restarts`` runs.

    Returns the labels and the mean cosine similarity of each vector to its centroid.
    The seed is fixed so a task's result does not change between attempts. Chosen over
    average-linkage clustering, which cut single noisy windows off as "speakers" (53 %
    right on the conversation fixture; k-means 95 %); restarts because one
    farthest-point start stuck in the same trap on the AAC copy of that fixture.
    """
    rng = np.random.default_rng(0)
    best_labels, best_score = np.zeros(len(x), dtype=int), -2.0
    for _ in range(restarts if k > 1 else 1):
        seeds = [int(rng.integers(len(x)))]
        while len(seeds) < k:
            distance = np.clip(1.0 - (x @ x[seeds].T).max(axis=1), 0.0, None) ** 2
            total = distance.sum()
            seeds.append(int(rng.choice(len(x), p=distance / total)) if total > 0 else len(seeds))
        labels, score = _refine(x, x[seeds].copy(), iterations)
        if score > best_score + 1e-9:
            best_labels, best_score = labels, score
    return best_labels, best_score


def _refine(x: np.ndarray, centroids: np.ndarray, iterations: int) -> tuple[np.ndarray, float]:
    labels = np.zeros(len(x), dtype=int)
    for _ in range(iterations):
        labels = np.argmax(x @ centroids.T, axis=1)
        for j in range(len(centroids)):
            if (labels == j).any():
                centroids[j] = x[labels == j].mean(axis=0)
        centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    labels = np.argmax(x @ centroids.T, axis=1)
    return labels, float(np.mean(np.sum(x * centroids[labels], axis=1)))


def _cluster(embeddings: np.ndarray, num_speakers: int | None) -> np.ndarray:
    """Cluster labels 0..k-1; k is ``num_speakers`` or the elbow of within-cluster similarity."""
    n = len(embeddings)
    if num_speakers:
        return _kmeans(embeddings, min(num_speakers, n))[0]
    labels, score = _kmeans(embeddings, 1)
    for k in range(2, min(MAX_SPEAKERS, n) + 1):
        candidate, candidate_score = _kmeans(embeddings, k)
        if candidate_score - score < ELBOW_GAIN:
            break
        labels, score = candidate, candidate_score
    return labels


def resemblyzer_turns(
    audio: np.ndarray,
    regions: list[tuple[float, float]],
    models: ModelCache,
    device: str,
    num_speakers: int | None,
) -> list[Turn]:
    """Speaker turns from resemblyzer embeddings; labels ``SPEAKER_1…`` by first appearance."""
    windows = _windows(regions)
    if not windows:
        return [Turn(s, e, "SPEAKER_1") for s, e in regions]
    encoder = _encoder(models, device)
    clips = [audio[int(w0 * SAMPLE_RATE) : int(w1 * SAMPLE_RATE)] for w0, w1, *_ in windows]
    embeddings = _embed(encoder, clips)
    labels = _cluster(embeddings, num_speakers)
    cores = [
        (c0, c1, int(label)) for (_w0, _w1, c0, c1), label in zip(windows, labels, strict=True)
    ]
    return _merge(_name_by_appearance(cores))


def _name_by_appearance(cores: list[tuple[float, float, int]]) -> list[Turn]:
    names: dict[int, str] = {}
    for _s, _e, label in cores:
        names.setdefault(label, f"SPEAKER_{len(names) + 1}")
    return [Turn(s, e, names[label]) for s, e, label in cores]


def _merge(turns: list[Turn]) -> list[Turn]:
    """Join neighbouring turns of one speaker that touch or are within 1 s of each other."""
    merged: list[Turn] = []
    for turn in sorted(turns, key=lambda t: t.start):
        last = merged[-1] if merged else None
        if last and last.speaker == turn.speaker and turn.start - last.end < 1.0:
            merged[-1] = Turn(last.start, max(last.end, turn.end), last.speaker)
        else:
            merged.append(turn)
    return merged


def pyannote_turns(
    audio: np.ndarray, pipeline_name: str, models: ModelCache, device: str, n: int | None
) -> list[Turn]:
    """Turns from a pyannote.audio pipeline found locally; ``ModelMissing`` otherwise."""
    pipeline = models.get(
        ModelKey("pyannote", pipeline_name, device), lambda: _load_pyannote(pipeline_name, device)
    )
    import torch

    waveform = {"waveform": torch.from_numpy(audio)[None], "sample_rate": SAMPLE_RATE}
    output = pipeline(waveform, num_speakers=n) if n else pipeline(waveform)
    # pyannote.audio 4 wraps the annotation; 3.x returns it directly.
    annotation = getattr(output, "speaker_diarization", output)
    raw = [(seg.start, seg.end, str(label)) for seg, _, label in annotation.itertracks(True)]
    labels = {label: i for i, label in enumerate(dict.fromkeys(r[2] for r in raw))}
    return _merge(_name_by_appearance([(s, e, labels[label]) for s, e, label in raw]))


def _load_pyannote(name: str, device: str) -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from pyannote.audio import Pipeline
    except ImportError:
        raise ModelMissing("--diarization-backend pyannote: pip install pyannote.audio") from None
    source: str | None = name if Path(name).exists() else None
    if source is None:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name, "config.yaml")
        source = cached if isinstance(cached, str) else None
    if source is None:
        raise ModelMissing(
            f"pyannote pipeline {name!r} is not available locally: give --pyannote-pipeline a "
            "local config.yaml or cache the pipeline (and its models) under HF_HOME"
        )
    pipeline = Pipeline.from_pretrained(source)
    if pipeline is None:
        raise ModelMissing(f"pyannote pipeline {name!r} could not be loaded from {source}")
    import torch

    return pipeline.to(torch.device(device))


def assign_speakers(segments: list[dict[str, Any]], turns: list[Turn]) -> list[dict[str, Any]]:
    """Give every word the speaker of the turn it overlaps most (nearest turn if none).

    Whisper segments that span a speaker change are split there, so each returned
    segment ``{start, end, speaker, text, words}`` has exactly one speaker.
    """
    out: list[dict[str, Any]] = []
    for seg in segments:
        words = seg.get("words") or []
        if not words:
            out.append({**seg, "speaker": _speaker_at(seg["start"], seg["end"], turns)})
            continue
        group: list[dict[str, Any]] = []
        current = None
        for word in words:
            speaker = _speaker_at(word["start"], word["end"], turns)
            if group and speaker != current:
                out.append(_segment(group, current))
                group = []
            group.append(word)
            current = speaker
        out.append(_segment(group, current))
    return out


def _segment(words: list[dict[str, Any]], speaker: str | None) -> dict[str, Any]:
    text = "".join(w["word"] for w in words).strip()
    return {
        "start": words[0]["start"],
        "end": words[-1]["end"],
        "speaker": speaker,
        "text": text,
        "words": words,
    }


def _speaker_at(start: float, end: float, turns: list[Turn]) -> str | None:
    if not turns:
        return None
    overlaps = [max(0.0, min(end, t.end) - max(start, t.start)) for t in turns]
    best = int(np.argmax(overlaps))
    if overlaps[best] > 0:
        return turns[best].speaker
    middle = (start + end) / 2
    gaps = [min(abs(middle - t.start), abs(middle - t.end)) for t in turns]
    return turns[int(np.argmin(gaps))].speaker
