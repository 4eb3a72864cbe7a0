"""What the CLI prints for people: excerpts, tables, durations, the progress bar."""

from __future__ import annotations

import io
import re
import time

from morag_worker.cli.demo_report import excerpt
from morag_worker.cli.output import duration, table
from morag_worker.cli.status_view import status_lines
from morag_worker.cli.waiting import ProgressView

TRANSCRIPT = """# talk.ogg

**[00:00:00–00:00:03] SPEAKER_1:** Good morning. Did you finish the report?

**[00:00:04–00:00:08] SPEAKER_2:** Yes, last night.
"""
VIDEO = "# clip.mp4\n\n- Duration: 27.4 s\n- Codecs: h264, aac\n\n" + TRANSCRIPT.split("\n", 2)[2]


def test_excerpt_skips_the_file_heading_and_transcript_markup() -> None:
    assert excerpt(TRANSCRIPT, "talk.ogg") == "SPEAKER_1: Good morning. Did you finish the report?"
    assert excerpt(VIDEO, "clip.mp4").startswith("SPEAKER_1: Good morning")
    captions = "# A meeting\n\n**[00:00:00–00:00:03]:** Good morning.\n"
    assert excerpt(captions, "https://example.org/watch") == "Good morning."
    scan = "# scan.png\n\nQuarterly Maintenance Report\n\nThe pumping station…"
    assert excerpt(scan, "scan.png") == "Quarterly Maintenance Report"
    # a document's own title is content; page markers are not
    assert excerpt("<!-- page: 1 -->\n\n# Climate Brief\n\nText", "brief.pdf") == "Climate Brief"
    assert excerpt("# page.html\n\nBody", "http://127.0.0.1:9/pages/page.html") == "Body"
    assert len(excerpt("word " * 100, "x.txt", width=30)) == 30


def test_table_aligns_columns_and_durations_read_naturally() -> None:
    text = table(["id", "state"], [["t_1", "queued"], ["t_22", "completed"]])
    assert text.splitlines() == ["id    state", "t_1   queued", "t_22  completed"]
    assert [duration(s) for s in (0.42, 12.3, 185, 7830)] == ["0.42s", "12s", "3m05s", "2h10m"]


def test_progress_bar_on_a_terminal_and_lines_elsewhere() -> None:
    tty = io.StringIO()
    view = ProgressView(tty, "t_1", tty=True)
    for progress in (0.1, 0.1, 0.5):
        view.update({"state": "leased", "stage": "transcribe", "progress": progress})
    view.finish({"state": "completed", "started_at": 10.0, "finished_at": 14.0})
    out = tty.getvalue()
    assert "[############------------]  50%  ETA" in out and "\r\x1b[2K" in out
    assert out.count("10%") == 1  # an unchanged line is not redrawn
    assert out.endswith("t_1: completed in 4.0s\n")

    plain = io.StringIO()
    view = ProgressView(plain, "t_1", tty=False)
    for progress in (0.1, 0.12, 0.15, 0.5):
        view.update({"state": "leased", "stage": "transcribe", "progress": progress})
    assert plain.getvalue().splitlines() == [
        "t_1: leased transcribe 10%",
        "t_1: leased transcribe 50%",
    ]
    assert "\r" not in plain.getvalue()


def test_status_reads_as_sentences_with_local_times() -> None:
    info = {
        "task_id": "t_1",
        "task_type": "audio",
        "state": "leased",
        "attempt": 2,
        "max_attempts": 3,
        "worker_id": "gpu-host",
        "stage": "transcribe",
        "progress": 0.4,
        "input_files": [{"name": "talk.ogg", "size": 2_500_000}],
        "parameters": {"language": "en"},
        "created_at": 1000.0,
        "started_at": 1012.0,
        "finished_at": None,
        "indexed_at": None,
        "timings": {},
        "priority": 0,
        "last_error": {"type": "lease_expired", "message": "the worker stopped", "retryable": True},
    }
    lines = status_lines(info, now=1030.0)
    text = "\n".join(lines)
    assert "running: transcribe 40% (attempt 2 of 3, worker gpu-host)" in text
    assert "talk.ogg (2.5 MB)" in text and "language='en'" in text
    assert "after 12s in the queue" in text and re.search(r"running for\s+18s", text)
    assert re.search(r"last error\s+lease_expired: the worker stopped \(an earlier attempt\)", text)
    assert time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(1000.0)) in text


def test_status_of_a_queued_retry_names_the_next_attempt() -> None:
    info = {
        "task_id": "t_2",
        "task_type": "noop",
        "state": "queued",
        "attempt": 1,
        "max_attempts": 3,
        "worker_id": None,
        "stage": None,
        "progress": None,
        "input_files": [],
        "parameters": {},
        "created_at": 1000.0,
        "started_at": 1001.0,
        "finished_at": None,
        "indexed_at": None,
        "timings": {},
        "priority": 5,
        "last_error": {"type": "boom", "message": "it broke", "retryable": True},
    }
    text = "\n".join(status_lines(info, now=1010.0))
    assert "queued to retry (attempt 2 of 3 next)" in text and re.search(r"priority\s+5", text)
