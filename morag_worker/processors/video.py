"""Video tasks: container metadata (duration, resolution, codecs) → audio track → speech pipeline.

The audio track is decoded straight from the container with PyAV, so no intermediate
file and no ``ffmpeg`` program. A video without an audio track completes with its
metadata and a transcript that says there is no audio (``metadata.has_audio`` false).
"""

from __future__ import annotations

from typing import Any, ClassVar

from morag_worker.errors import BadInput
from morag_worker.processors.audio import Timings, checkpoint, single_input, transcribe_audio
from morag_worker.processors.base import TaskContext
from morag_worker.processors.media import decode_audio, probe
from morag_worker.protocol import TaskResult


def _describe(name: str, meta: dict[str, Any]) -> str:
    lines = [f"# {name}", ""]
    if meta.get("duration_s") is not None:
        lines.append(f"- Duration: {meta['duration_s']:.1f} s")
    if meta.get("resolution"):
        lines.append(f"- Resolution: {meta['resolution']}")
    codecs = [s["codec"] for s in meta["video_streams"] + meta["audio_streams"] if s.get("codec")]
    if codecs:
        lines.append(f"- Codecs: {', '.join(codecs)}")
    return "\n".join(lines) + "\n"


class VideoProcessor:
    """Transcribes a video's first audio track and records the video's metadata."""

    task_type: ClassVar[str] = "video"

    def process(self, ctx: TaskContext) -> TaskResult:
        path, name = single_input(ctx)
        timings = Timings()
        checkpoint(ctx, 0.0, "probe")
        with timings.stage("probe"):
            info = probe(path)
        if not info.video and not info.audio:
            raise BadInput(f"{name}: no video or audio stream")
        limit = ctx.settings.max_media_duration_s
        if info.duration_s is not None and info.duration_s > limit:
            raise BadInput(
                f"{name}: {info.duration_s:.0f} s is longer than the limit of {limit:.0f} s "
                "(--max-media-duration-s)"
            )
        metadata: dict[str, Any] = {"source": name, **info.as_metadata()}
        metadata["has_audio"] = bool(info.audio)
        if not info.audio:
            metadata.update(speakers=[], timings_s=timings.seconds)
            content = (
                _describe(name, metadata)
                + "\n_This video has no audio track; nothing to transcribe._\n"
            )
            return TaskResult(content=content, metadata=metadata)
        with timings.stage("decode"):
            audio = decode_audio(path, max_duration_s=limit)
        result = transcribe_audio(ctx, audio, name, metadata, timings)
        # The transcript keeps its own heading; the video facts go between it and the turns.
        _heading, _, body = result.content.partition("\n\n")
        result.content = _describe(name, metadata) + "\n" + body
        return result
