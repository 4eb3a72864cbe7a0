"""Audio tasks: decode → VAD → transcribe (word timestamps) → diarize → Markdown, segments, chunks.

:func:`transcribe_audio` is the speech pipeline that video and YouTube tasks reuse.
Task parameters (all optional): ``language`` (ISO code; overrides ``--whisper-language``),
``num_speakers`` (int ≥ 1; estimated when absent), ``diarize`` (bool, default true).
Bad files are :class:`~morag_worker.errors.BadInput` (see :mod:`.media`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from morag_worker.errors import BadInput, Cancelled
from morag_worker.models.whisper import Transcript, compute_type_for, get_transcriber
from morag_worker.processors import attribution, diarize, gapfill
from morag_worker.processors.base import TaskContext
from morag_worker.processors.chunking import chunk_transcript
from morag_worker.processors.media import SAMPLE_RATE, decode_audio, probe
from morag_worker.protocol import Chunk, TaskResult


class Timings:
    """Seconds per stage, in the order the stages ran (reported as ``metadata.timings_s``)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(
                self.seconds.get(name, 0.0) + time.perf_counter() - started, 3
            )


def single_input(ctx: TaskContext) -> tuple[Path, str]:
    """The task's one input file and its name; ``BadInput`` unless there is exactly one."""
    if len(ctx.inputs) != 1:
        raise BadInput(f"a {ctx.task_type} task takes exactly one file, got {len(ctx.inputs)}")
    name = ctx.input_names[0] if ctx.input_names else ctx.inputs[0].name
    return ctx.inputs[0], name


def checkpoint(ctx: TaskContext, progress: float, stage: str) -> None:
    if ctx.cancelled():
        raise Cancelled(f"cancelled before {stage}")
    ctx.report(progress, stage)


def speech_options(
    params: Mapping[str, Any], default_language: str
) -> tuple[str | None, int | None]:
    """``(language, num_speakers)`` from task parameters; ``BadInput`` when malformed."""
    language = params.get("language") or default_language or None
    if language is not None and (not isinstance(language, str) or not language.isalpha()):
        raise BadInput(f"parameter language={language!r}: give an ISO code such as 'en'")
    speakers = params.get("num_speakers")
    if speakers is not None and (
        isinstance(speakers, bool) or not isinstance(speakers, int) or not 1 <= speakers <= 50
    ):
        raise BadInput(f"parameter num_speakers={speakers!r}: give an integer from 1 to 50")
    return language, speakers


def transcribe_audio(
    ctx: TaskContext, audio: np.ndarray, source: str, metadata: dict[str, Any], timings: Timings
) -> TaskResult:
    """Run VAD, Whisper and diarization on 16 kHz mono ``audio``; build the result."""
    settings = ctx.settings
    language, num_speakers = speech_options(ctx.parameters, settings.whisper_language)
    checkpoint(ctx, 0.2, "vad")
    with timings.stage("vad"):
        regions = diarize.speech_regions(audio)
    duration = len(audio) / SAMPLE_RATE
    speech = sum(e - s for s, e in regions)
    metadata.update(duration_s=round(duration, 3), speech_s=round(speech, 3))
    if not regions:
        metadata.update(language=None, speakers=[], timings_s=timings.seconds)
        return TaskResult(content=f"# {source}\n\n_No speech detected._\n", metadata=metadata)
    checkpoint(ctx, 0.3, "transcribe")
    with timings.stage("load_model"):
        transcriber = get_transcriber(ctx.models, settings, ctx.device)
    batch = settings.whisper_batch_size if duration >= settings.whisper_batch_min_s else 0
    with timings.stage("transcribe"):
        transcript = transcriber.transcribe(
            audio,
            language=language,
            beam_size=settings.whisper_beam_size,
            on_segment=_progress(ctx, duration),
            batch_size=batch,
        )
        transcript, refilled_s = gapfill.fill_gaps(
            transcriber,
            audio,
            regions,
            transcript,
            language=language,
            beam_size=settings.whisper_beam_size,
            on_segment=_cancellable(ctx),
        )
    metadata["retranscribed_s"] = refilled_s
    checkpoint(ctx, 0.8, "diarize")
    with timings.stage("diarize"):
        turns = _turns(ctx, audio, regions, num_speakers)
        segments = attribution.assign_speakers(transcript.segments, turns)
    with timings.stage("chunk"):
        chunks = transcript_chunks(ctx, segments, source)
    metadata.update(_speech_metadata(ctx, transcript, segments, bool(turns)))
    metadata.update(
        timings_s=timings.seconds,
        real_time_factor=round(timings.seconds["transcribe"] / duration, 4),
        asr_batch_size=batch,
    )
    return TaskResult(
        content=render_markdown(source, segments),
        metadata=metadata,
        chunks=chunks,
        segments=segments,
    )


def transcript_chunks(ctx: TaskContext, segments: list[dict[str, Any]], source: str) -> list[Chunk]:
    """Time-aware chunks of whole segments, sized by the task's chunk settings."""
    return chunk_transcript(
        segments,
        target_tokens=ctx.settings.chunk_tokens,
        overlap_tokens=ctx.settings.chunk_overlap_tokens,
        source=source,
    )


def _progress(ctx: TaskContext, duration: float) -> Callable[[float], None]:
    """Per-segment callback: progress from 0.3 to 0.8 of the task; stop when cancelled."""

    def on_segment(end_s: float) -> None:
        if ctx.cancelled():
            raise Cancelled("cancelled during transcription")
        ctx.report(0.3 + 0.5 * min(1.0, end_s / duration), "transcribe")

    return on_segment


def _cancellable(ctx: TaskContext) -> Callable[[float], None]:
    """Per-segment callback that only stops a cancelled task (progress stays put)."""

    def on_segment(_end_s: float) -> None:
        if ctx.cancelled():
            raise Cancelled("cancelled during transcription")

    return on_segment


def _speech_metadata(
    ctx: TaskContext, transcript: Transcript, segments: list[dict[str, Any]], diarized: bool
) -> dict[str, Any]:
    settings = ctx.settings
    return {
        "language": transcript.language,
        "language_probability": round(transcript.language_probability, 3),
        "model": settings.whisper_model,
        "asr_backend": settings.asr_backend,
        "compute_type": compute_type_for(ctx.device, settings.whisper_compute_type),
        "device": ctx.device,
        "diarization": settings.diarization_backend if diarized else "none",
        "speakers": sorted({s["speaker"] for s in segments if s.get("speaker")}),
    }


def _turns(
    ctx: TaskContext, audio: np.ndarray, regions: list[tuple[float, float]], n: int | None
) -> list[diarize.Turn]:
    backend = ctx.settings.diarization_backend
    if ctx.parameters.get("diarize") is False or backend == "none":
        return []
    if n == 1:
        return [diarize.Turn(regions[0][0], regions[-1][1], "SPEAKER_1")]
    if backend == "pyannote":
        return diarize.pyannote_turns(
            audio, ctx.settings.pyannote_pipeline, ctx.models, ctx.device, n
        )
    if backend != "resemblyzer":
        raise BadInput(f"--diarization-backend {backend!r}: expected resemblyzer, pyannote or none")
    return diarize.resemblyzer_turns(audio, regions, ctx.models, ctx.device, n)


def timestamp(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def render_markdown(source: str, segments: list[dict[str, Any]]) -> str:
    """One paragraph per speaker turn: ``**[00:00:01–00:00:05] SPEAKER_1:** text``."""
    lines = [f"# {source}", ""]
    turn: list[dict[str, Any]] = []
    for seg in [*segments, None]:
        if turn and (seg is None or seg.get("speaker") != turn[0].get("speaker")):
            who = f" {turn[0]['speaker']}" if turn[0].get("speaker") else ""
            text = " ".join(s["text"] for s in turn if s["text"])
            span = f"{timestamp(turn[0]['start'])}–{timestamp(turn[-1]['end'])}"
            lines += [f"**[{span}]{who}:** {text}", ""]
            turn = []
        if seg is not None:
            turn.append(seg)
    return "\n".join(lines)


class AudioProcessor:
    """Transcribes one audio file (any format FFmpeg decodes) with speakers and timestamps."""

    task_type: ClassVar[str] = "audio"

    def process(self, ctx: TaskContext) -> TaskResult:
        path, name = single_input(ctx)
        timings = Timings()
        checkpoint(ctx, 0.0, "decode")
        with timings.stage("decode"):
            info = probe(path)
            audio = decode_audio(path, max_duration_s=ctx.settings.max_media_duration_s)
        metadata: dict[str, Any] = {"source": name, **info.as_metadata()}
        return transcribe_audio(ctx, audio, name, metadata, timings)
