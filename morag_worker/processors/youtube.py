"""YouTube (and any URL yt-dlp supports): metadata, then captions, else audio → speech pipeline.

Parameters: ``url`` (required), ``language`` (preferred caption/spoken language),
``num_speakers``, ``diarize`` (as for audio), ``captions`` (bool, default true; false
always transcribes).

Order: manual captions in the preferred language (else English, else any), then automatic
ones; captions keep their cue timestamps and need no transcription. Without captions the
best audio-only format (else the smallest complete one) is downloaded into the task's
work directory and transcribed.

Safety: every HTTP request yt-dlp makes (pages, manifests, captions, media) and every
redirect hop goes through the URL guard (:mod:`morag_worker.urlguard`) before it is
sent, on a connection pinned to the checked addresses (:mod:`youtube_net`); a refused
address is never contacted. Limits: ``--max-media-duration-s`` (from metadata, before
any download), ``--max-download-bytes`` and ``--download-timeout-s``.
"""

from __future__ import annotations

import functools
import re
import time
from pathlib import Path
from typing import Any, ClassVar

import yt_dlp

from morag_worker.errors import BadInput, Cancelled, TaskFailure
from morag_worker.processors.audio import (
    Timings,
    checkpoint,
    render_markdown,
    speech_options,
    transcribe_audio,
    transcript_chunks,
)
from morag_worker.processors.base import TaskContext
from morag_worker.processors.media import decode_audio
from morag_worker.processors.youtube_net import GuardedRequestsRH, GuardRefusal, ytdlp_failure
from morag_worker.protocol import TaskResult
from morag_worker.urlguard import UrlGuard

#: Captions larger than this are not captions (a talk's VTT is tens of kilobytes).
MAX_CAPTION_BYTES = 5 * 1024 * 1024
_METADATA_KEYS = (
    "id", "title", "uploader", "channel", "upload_date", "duration", "webpage_url",
    "extractor", "view_count", "like_count", "language", "categories", "tags",
)  # fmt: skip
_CUE_TIME = re.compile(r"(?:(\d+):)?(\d{1,2}):(\d{2})[.,](\d{3})")
_TAG = re.compile(r"<[^>]*>")
#: Protocols yt-dlp downloads itself (HLS natively with ``hls_prefer_native``).
_NATIVE_PROTOCOLS = frozenset({"http", "https", "m3u8", "m3u8_native", "http_dash_segments"})


class _GuardedYDL(yt_dlp.YoutubeDL):
    """YoutubeDL whose every request passes the URL guard, the deadline and cancellation.

    A refusal raised inside yt-dlp may be wrapped or swallowed by its error handling, so
    it is also kept in ``failure`` and re-raised by the caller.
    """

    def __init__(self, params: dict[str, Any], guard: UrlGuard, ctx: TaskContext) -> None:
        self.guard, self.ctx = guard, ctx  # before yt-dlp may build its director
        super().__init__(params)
        self.deadline = time.monotonic() + ctx.settings.download_timeout_s
        self.failure: Exception | None = None

    def fail(self, exc: Exception) -> Exception:
        self.failure = self.failure or exc
        return exc

    def check_limits(self) -> None:
        if self.ctx.cancelled():
            raise self.fail(Cancelled("cancelled while fetching the URL"))
        if time.monotonic() > self.deadline:
            limit = self.ctx.settings.download_timeout_s
            raise self.fail(
                TaskFailure("timeout", f"fetching took over {limit:.0f} s", retryable=True)
            )

    @functools.cached_property
    def _request_director(self) -> Any:
        # One handler only, the guarded one: no request can take a path around the guard.
        handler = functools.partial(GuardedRequestsRH, guard=self.guard)
        return self.build_request_director([handler])

    def urlopen(self, req: Any) -> Any:
        self.check_limits()
        try:
            return super().urlopen(req)
        except GuardRefusal as exc:
            raise self.fail(exc.failure) from None

    def progress(self, status: dict[str, Any]) -> None:
        self.check_limits()
        done = status.get("downloaded_bytes") or 0
        if done > self.ctx.settings.max_download_bytes:
            self.fail(
                BadInput(f"the media is larger than {self.ctx.settings.max_download_bytes} bytes")
            )
            raise yt_dlp.utils.DownloadCancelled("size limit")


def _options(ctx: TaskContext) -> dict[str, Any]:
    ctx.work_dir.mkdir(parents=True, exist_ok=True)  # downloads land here
    return {
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "noplaylist": True,
        "playlist_items": "1",
        "cachedir": False,
        "socket_timeout": 30,
        "retries": 2,
        # Audio alone is all the pipeline needs; "best" covers sites with muxed files only.
        "format": "bestaudio/best",
        "max_filesize": ctx.settings.max_download_bytes,
        # Only yt-dlp's own downloaders, whose every request passes ``urlopen`` (and so
        # the guard); no ffmpeg fix-ups, which would open the file or URL themselves.
        "hls_prefer_native": True,
        "fixup": "never",
        "outtmpl": str(ctx.work_dir / "media.%(ext)s"),
        "overwrites": True,
    }


def _run(ydl: _GuardedYDL, call: Any, *args: Any, **kwargs: Any) -> Any:
    """Call yt-dlp, turning its errors into task failures (a guard refusal wins)."""
    try:
        return call(*args, **kwargs)
    except (
        yt_dlp.utils.DownloadError,
        yt_dlp.utils.DownloadCancelled,
        BadInput,
        TaskFailure,
    ) as exc:
        if ydl.failure is not None:
            raise ydl.failure from None
        if isinstance(exc, TaskFailure):
            raise
        raise ytdlp_failure(exc) from None


def _check_protocol(info: dict[str, Any]) -> None:
    """Refuse formats only an external program (ffmpeg, rtmpdump) downloads: it would
    open its URLs outside the guard."""
    protocol = str(info.get("protocol") or "https")
    if any(p not in _NATIVE_PROTOCOLS for p in protocol.split("+")):
        raise BadInput(f"the media is served over {protocol!r}, which is not fetched here")


def _single_entry(info: dict[str, Any]) -> dict[str, Any]:
    if info.get("_type") == "playlist":
        entries = [e for e in info.get("entries") or [] if e]
        if not entries:
            raise BadInput("the URL is a playlist without any playable entry")
        return dict(entries[0])
    return info


def pick_captions(info: dict[str, Any], language: str | None) -> tuple[str, str, str] | None:
    """``(kind, language, url)`` of the best VTT/SRT captions, manual before automatic."""
    for kind, key in (("manual", "subtitles"), ("automatic", "automatic_captions")):
        tracks: dict[str, list[dict[str, Any]]] = info.get(key) or {}
        langs = [lang for lang in tracks if lang != "live_chat"]
        preferred = [lang for lang in (language, "en") if lang]
        ordered = [x for p in preferred for x in langs if x == p or x.startswith(p + "-")]
        for lang in ordered + langs:
            for fmt in ("vtt", "srt"):
                for track in tracks[lang]:
                    if track.get("ext") == fmt and track.get("url"):
                        return kind, lang, str(track["url"])
    return None


def _seconds(stamp: str) -> float:
    match = _CUE_TIME.search(stamp)
    if match is None:
        raise ValueError(stamp)
    h, m, s, ms = match.groups()
    return int(h or 0) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def parse_captions(text: str) -> list[dict[str, Any]]:
    """WebVTT or SRT → segments [{start, end, speaker: None, text, words: []}].

    Tags (``<c>``, inline timestamps, ``<v Speaker>``) are stripped; lines repeated from
    the previous cue (YouTube's rolling automatic captions) are dropped.
    """
    segments: list[dict[str, Any]] = []
    previous: set[str] = set()
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n")):
        lines = block.strip().split("\n")
        timing = next((i for i, line in enumerate(lines) if "-->" in line), None)
        if timing is None:
            continue
        start_s, _, rest = lines[timing].partition("-->")
        cue = [" ".join(_TAG.sub("", line).split()) for line in lines[timing + 1 :]]
        fresh = [line for line in cue if line and line not in previous]
        previous = set(cue)
        if fresh:
            start, end = _seconds(start_s), _seconds(rest.split()[0])
            segments.append(
                {"start": start, "end": end, "speaker": None, "text": " ".join(fresh), "words": []}
            )
    return segments


def _caption_result(
    ctx: TaskContext,
    ydl: _GuardedYDL,
    choice: tuple[str, str, str],
    meta: dict[str, Any],
    timings: Timings,
) -> TaskResult | None:
    kind, lang, url = choice
    with timings.stage("captions"):
        response = _run(ydl, ydl.urlopen, url)
        raw = response.read(MAX_CAPTION_BYTES + 1)
        if len(raw) > MAX_CAPTION_BYTES:
            raise BadInput(f"captions at {url} are larger than {MAX_CAPTION_BYTES} bytes")
        segments = parse_captions(raw.decode("utf-8", errors="replace"))
    if not segments:
        return None
    title = str(meta.get("title") or meta.get("id") or "video")
    chunks = transcript_chunks(ctx, segments, title)
    meta.update(transcript_source=f"captions:{kind}", language=lang, timings_s=timings.seconds)
    return TaskResult(
        content=render_markdown(title, segments), metadata=meta, chunks=chunks, segments=segments
    )


def _download(ydl: _GuardedYDL, info: dict[str, Any], ctx: TaskContext) -> Path:
    done = _run(ydl, ydl.process_ie_result, info, download=True)
    paths = [d.get("filepath") for d in (done or {}).get("requested_downloads") or []]
    files = [Path(p) for p in paths if p and Path(p).is_file()]
    if not files:
        limit = ctx.settings.max_download_bytes
        raise BadInput(f"nothing was downloaded; the media may be larger than {limit} bytes")
    return files[0]


class YoutubeProcessor:
    """Captions or a transcript, with the video's metadata, for one URL."""

    task_type: ClassVar[str] = "youtube"

    def process(self, ctx: TaskContext) -> TaskResult:
        url = ctx.parameters.get("url")
        if not isinstance(url, str) or not url:
            raise BadInput("a youtube task needs parameters.url")
        guard = UrlGuard.from_settings(ctx.settings.allow_private_urls, ctx.settings.url_allow_list)
        guard.check(url)
        language, _ = speech_options(ctx.parameters, ctx.settings.whisper_language)
        timings = Timings()
        checkpoint(ctx, 0.0, "metadata")
        with _GuardedYDL(_options(ctx), guard, ctx) as ydl:
            ydl.add_progress_hook(ydl.progress)
            with timings.stage("metadata"):
                info = _single_entry(_run(ydl, ydl.extract_info, url, download=False))
            meta: dict[str, Any] = {k: info[k] for k in _METADATA_KEYS if info.get(k) is not None}
            meta["source_url"] = url
            limit = ctx.settings.max_media_duration_s
            if (info.get("duration") or 0) > limit:
                raise BadInput(
                    f"{url}: {info['duration']:.0f} s is longer than the limit of {limit:.0f} s"
                )
            choice = pick_captions(info, language) if ctx.parameters.get("captions", True) else None
            if choice is not None:
                result = _caption_result(ctx, ydl, choice, meta, timings)
                if result is not None:
                    return result
            _check_protocol(info)
            checkpoint(ctx, 0.05, "download")
            with timings.stage("download"):
                path = _download(ydl, info, ctx)
        with timings.stage("decode"):
            audio = decode_audio(path, max_duration_s=limit)
        meta["transcript_source"] = "transcription"
        return transcribe_audio(ctx, audio, str(meta.get("title") or url), meta, timings)
