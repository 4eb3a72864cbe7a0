"""Voice activity detection and speaker turns (which speaker talks when).

VAD is Silero VAD as bundled with faster-whisper (``faster_whisper/assets/*.onnx``, run
by onnxruntime). It is the same Silero model the ``silero-vad`` wheel ships, but this copy
is the one faster-whisper's own ``vad_filter`` uses, so our speech regions and the
transcriber's agree; it needs no torch JIT, and the ``silero-vad`` wheel's audio extra
pins a torchaudio that does not match our torch.

Default diarization (``resemblyzer``, fully offline: its encoder ships in its wheel):
speech regions → 1.5 s windows every 0.75 s → speaker embeddings → spherical k-means
with the given speaker count or, without one, the gap statistic's count
(:mod:`.speakers`) → each window labels the 0.75 s around its centre → turns → changes
inside a region moved to the pause where they happen (:mod:`.turn_edges`).
``pyannote`` runs a locally available pyannote.audio pipeline instead. Words are given
speakers by :mod:`.attribution`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from morag_worker.errors import ModelMissing
from morag_worker.models.cache import ModelCache, ModelKey
from morag_worker.processors import speakers, turn_edges
from morag_worker.processors.media import SAMPLE_RATE
from morag_worker.processors.turn_edges import Turn

__all__ = ["Turn", "preload", "pyannote_turns", "resemblyzer_turns", "speech_regions"]

#: Window and hop for speaker embeddings: 1.5 s is about resemblyzer's 1.6 s partial
#: utterance (shorter windows make noisy embeddings); the hop bounds a turn boundary's
#: error to about ±0.4 s.
WINDOW_S = 1.5
HOP_S = 0.75
#: Speech shorter than this carries too little voice for an embedding of its own; it
#: takes the label of the nearest labelled time.
MIN_WINDOW_S = 0.5
#: resemblyzer's partial utterance: 160 mel frames of 10 ms.
PARTIAL_FRAMES = 160
PARTIAL_SAMPLES = PARTIAL_FRAMES * SAMPLE_RATE // 100
#: Windows per forward pass: 64 × 1.6 s of mel frames is 2.6 MB, small on any device.
BATCH = 64


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
    labels = speakers.cluster(embeddings, num_speakers)
    cores = [
        (c0, c1, int(label)) for (_w0, _w1, c0, c1), label in zip(windows, labels, strict=True)
    ]
    names = _names_by_appearance(cores)
    centroids = {}
    for label, name in names.items():
        mean = embeddings[labels == label].mean(axis=0)
        centroids[name] = mean / np.linalg.norm(mean)
    turns = _merge([Turn(s, e, names[label]) for s, e, label in cores])
    return turn_edges.refine(audio, turns, centroids, lambda found: _embed(encoder, found))


def _names_by_appearance(cores: list[tuple[float, float, int]]) -> dict[int, str]:
    names: dict[int, str] = {}
    for _s, _e, label in cores:
        names.setdefault(label, f"SPEAKER_{len(names) + 1}")
    return names


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
    cores = [(s, e, labels[label]) for s, e, label in raw]
    names = _names_by_appearance(cores)
    return _merge([Turn(s, e, names[label]) for s, e, label in cores])


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
