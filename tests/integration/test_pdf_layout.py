"""Multi-column PDFs through a real server and supervisor: the Markdown comes back in order.

The PDFs are generated into ``tmp_path`` by ``tests/fixtures/gen_layouts.py`` (seeded):
one with bands of two and three columns between full-width figures and paragraphs,
one in two columns with footnotes; the returned Markdown is scored against the truth.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from harness import Cluster

sys.path.insert(0, str(Path(__file__).parents[1] / "fixtures"))
from gen_layouts import generate
from layout_score import score


def test_multi_column_pdfs_come_back_in_reading_order(cluster: Cluster, tmp_path: Path) -> None:
    truths = {
        "mixed": generate("mixed", 510, tmp_path / "mixed.pdf"),
        "footnotes": generate("footnotes", 505, tmp_path / "footnotes.pdf"),
    }
    user = cluster.user("alice")
    cluster.supervisor(cluster.key_file("alice"), "--cpu-procs", "1")
    tasks = {name: user.submit_file(tmp_path / f"{name}.pdf", "document", {}) for name in truths}
    for name, task_id in tasks.items():
        info = user.wait(task_id, 180)
        assert info["state"] == "completed", info
        result = user.get(f"/api/v1/tasks/{task_id}/result")["result"]
        truth = truths[name]
        found = score(result["content"], truth)
        assert found.order == 1.0 and found.headings == 1.0 and found.whole >= 0.9, found
        assert found.markers == 1.0 and found.footnotes == 1.0 and found.furniture == 0, found
        # the chunks follow the headings in reading order too
        headings = [t for kind, t in truth["elements"] if kind == "heading"][1:]
        paths = [c["heading_path"][-1] for c in result["chunks"] if c["heading_path"]]
        seen = list(dict.fromkeys(p for p in paths if p in headings))
        assert seen == [h for h in headings if h in seen] and len(seen) >= len(headings) - 1
        assert not re.search(r"^\d{1,3}$", result["content"], re.M)
