"""Expensive documents through a real server and supervisor: each fails once, as
non-retryable bad input naming its limit, and the same child goes on serving.

The conversion deadline is set low (``--doc-convert-timeout-s 2``) so that a document
within every count still runs past it: that proves the interrupt works inside a real
spawned child, not only in the test process.
"""

from __future__ import annotations

import sys
from pathlib import Path

from harness import Cluster, status, wait_for

from morag_worker.cli.api import TERMINAL

FIXTURES = Path(__file__).parents[1] / "fixtures"
sys.path.insert(0, str(FIXTURES))
import hostile_documents as hostile  # noqa: E402


def test_expensive_documents_fail_once_and_the_child_keeps_serving(
    cluster: Cluster, tmp_path: Path
) -> None:
    user = cluster.user("alice")
    _, health = cluster.supervisor(
        cluster.key_file("alice"), "--cpu-procs", "1", "--doc-convert-timeout-s", "2"
    )
    pid = status(health)["children"][0]["pid"]
    bad = {
        "--doc-max-xml-part-bytes": hostile.docx_bomb(tmp_path / "bomb.docx", 63_000_000),
        "--doc-max-pages": hostile.pdf_pages(tmp_path / "empty.pdf", 20_000),
        "--doc-max-elements": hostile.xlsx_cells(tmp_path / "cells.xlsx", 100_000, 10),
        "--doc-convert-timeout-s": hostile.docx_paragraphs(tmp_path / "slow.docx", 20_000),
    }
    ids = {user.submit_file(path, "document", {}): flag for flag, path in bad.items()}
    good = user.submit_file(FIXTURES / "documents" / "sample.docx", "document", {})

    def finished() -> bool:
        return all(user.get(f"/api/v1/tasks/{i}")["state"] in TERMINAL for i in [*ids, good])

    wait_for(finished, 300, "all document tasks")
    for task_id, flag in ids.items():
        info = user.get(f"/api/v1/tasks/{task_id}")
        assert info["state"] == "failed" and info["attempt"] == 1, (flag, info)
        error = info["last_error"]
        assert error["type"] == "bad_input" and not error["retryable"], (flag, error)
        assert flag in error["message"], (flag, error)
    assert user.get(f"/api/v1/tasks/{good}")["state"] == "completed"
    result = user.get(f"/api/v1/tasks/{good}/result")["result"]
    assert "calibration drift" in result["content"]
    assert status(health)["children"][0]["pid"] == pid, "the child was replaced"
