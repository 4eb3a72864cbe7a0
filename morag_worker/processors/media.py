"""Media probing and decoding with PyAV (whose wheels bundle FFmpeg, so no ``ffmpeg`` program).

Contract: every problem with the *file* (not a media file, truncated or corrupt data, no
audio stream, a codec this FFmpeg cannot decode, no samples, longer than the limit) is
:class:`~morag_worker.errors.BadInput`, so the server does not retry it and the child
keeps serving. Audio comes out as 16 kHz mono float32 in [-1, 1], what Whisper, the VAD
and the speaker encoder all expect.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np

from morag_worker.errors import BadInput

#: Whisper, Silero VAD and resemblyzer all work at 16 kHz.
SAMPLE_RATE = 16000


@dataclass(frozen=True)
class MediaInfo:
    """What a container holds. ``duration_s`` is ``None`` when the container does not say."""

    format: str
    duration_s: float | None
    audio: list[dict[str, Any]] = field(default_factory=list)
    video: list[dict[str, Any]] = field(default_factory=list)

    def as_metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"container": self.format, "duration_s": self.duration_s}
        meta["audio_streams"] = self.audio
        meta["video_streams"] = self.video
        if self.video:
            first = self.video[0]
            meta["resolution"] = f"{first['width']}x{first['height']}"
        return meta


def _open(path: Path) -> av.container.InputContainer:
    if not path.exists() or path.stat().st_size == 0:
        raise BadInput(f"{path.name}: the file is empty")
    try:
        return av.open(str(path), metadata_errors="ignore")
    except av.FFmpegError as exc:
        raise BadInput(f"{path.name}: not a readable media file ({exc})") from None


def probe(path: Path) -> MediaInfo:
    """Read the container's streams and duration without decoding; ``BadInput`` if unreadable."""
    with _open(path) as container:
        duration = container.duration / 1_000_000 if container.duration else None
        audio, video = [], []
        for stream in container.streams:
            ctx: Any = stream.codec_context
            codec = ctx.name if ctx is not None else None
            if stream.type == "audio":
                # A stream whose codec this FFmpeg does not know has no codec context.
                audio.append(
                    {
                        "codec": codec,
                        "sample_rate": getattr(ctx, "sample_rate", None),
                        "channels": getattr(ctx, "channels", None),
                    }
                )
            elif stream.type == "video":
                rate = stream.average_rate
                video.append(
                    {
                        "codec": codec,
                        "width": getattr(ctx, "width", None),
                        "height": getattr(ctx, "height", None),
                        "fps": round(float(rate), 3) if rate else None,
                    }
                )
        return MediaInfo(container.format.name, duration, audio, video)


def decode_audio(path: Path, *, max_duration_s: float) -> np.ndarray:
    """Decode the first audio stream of ``path`` to 16 kHz mono float32.

    Refuses (``BadInput``) a file whose declared duration or decoded length exceeds
    ``max_duration_s`` — the declared one is checked first so an oversized file costs
    nothing, the decoded one because a container's duration can lie.
    """
    with _open(path) as container:
        if not container.streams.audio:
            raise BadInput(f"{path.name}: no audio stream")
        stream = container.streams.audio[0]
        declared = _declared_duration(container, stream)
        if declared is not None and declared > max_duration_s:
            raise _too_long(path, declared, max_duration_s)
        if stream.codec_context is None or stream.codec_context.name in ("", "none"):
            raise BadInput(f"{path.name}: its audio codec is not supported by this FFmpeg build")
        samples = _decode_stream(path, container, stream, max_duration_s)
    if samples.size == 0:
        raise BadInput(f"{path.name}: the audio stream holds no samples")
    return samples


def _declared_duration(container: av.container.InputContainer, stream: Any) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return container.duration / 1_000_000 if container.duration else None


def _too_long(path: Path, seconds: float, limit: float) -> BadInput:
    return BadInput(
        f"{path.name}: {seconds:.0f} s of audio is longer than the limit of {limit:.0f} s "
        "(--max-media-duration-s)"
    )


def _decode_stream(
    path: Path, container: av.container.InputContainer, stream: Any, max_duration_s: float
) -> np.ndarray:
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    limit = int(max_duration_s * SAMPLE_RATE)
    parts: list[np.ndarray] = []
    total = 0
    try:
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                parts.append(out.to_ndarray().reshape(-1))
                total += parts[-1].size
            if total > limit:
                raise _too_long(path, total / SAMPLE_RATE, max_duration_s)
        for out in resampler.resample(None):
            parts.append(out.to_ndarray().reshape(-1))
    except av.FFmpegError as exc:
        # Truncated files usually decode up to the damage; FFmpeg raises only when the
        # data is unusable, and then no partial transcript would be trustworthy either.
        raise BadInput(f"{path.name}: the audio cannot be decoded ({exc})") from None
    if not parts:
        return np.zeros(0, dtype=np.float32)
    return np.clip(np.concatenate(parts), -1.0, 1.0).astype(np.float32, copy=False)
