"""``morag demo`` (what ``make demo`` runs once installed): the whole system on the bundled
samples, with progress while it runs and a table that keeps queue wait and processing
time apart and shows real content for every row."""

from __future__ import annotations

import re

import pytest
from cli_runner import run

from morag_worker.cli.demo import sample_files


@pytest.mark.slow
def test_demo_reports_progress_times_and_content() -> None:
    done = run("morag", "demo")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "demo passed: every sample completed" in out
    names = [p.name for p in sample_files()] + ["lighthouse.html (web)", "meeting page (youtube)"]
    # progress: one line per task as it finished (stderr is not a terminal here)
    finished = [
        ln.split(None, 1)[1] for ln in done.stderr.splitlines() if ln.startswith("  completed ")
    ]
    assert sorted(finished) == sorted(names)

    header = next(ln for ln in out.splitlines() if ln.startswith("sample "))
    assert re.split(r"\s{2,}", header) == [
        "sample",
        "type",
        "state",
        "queued s",
        "processing s",
        "first line of content",
    ]
    rows = {}
    for line in out.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if cells[0] in names:
            rows[cells[0]] = cells
    assert set(rows) == set(names)
    for name, (_, task_type, state, queued, processing, content) in rows.items():
        assert state == "completed" and float(queued) >= 0 and float(processing) >= 0, name
        assert content and content not in (name, f"# {name}"), (name, content)  # not its name
        assert not content.startswith((":", "[", "*", "#")), (name, content)  # no markup
        if task_type in ("audio", "video"):
            assert re.match(r"SPEAKER_\d+: \w", content), (name, content)
    assert rows["maintenance-scan.png"][5] == "Quarterly Maintenance Report"
    assert rows["two-voices.ogg"][5].startswith("SPEAKER_1: Good morning")
    assert "search: " in out and re.search(r"^  1\. \d\.\d{3}  ", out, re.M)
