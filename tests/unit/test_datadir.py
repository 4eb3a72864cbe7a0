"""The data dir's layout version: adopted, advanced step by step, never downgraded."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from morag_worker.server.datadir import (
    STEPS as ALL_STEPS,
)
from morag_worker.server.datadir import (
    DataContext,
    DataStep,
    LayoutError,
    migrate_data_dir,
    pending_steps,
    read_layout,
)

#: The release's own layout step: later steps (the vector store's move) need a server.
STEPS = ALL_STEPS[:1]


def test_a_release_data_dir_is_adopted(tmp_path: Path) -> None:
    (tmp_path / "files").mkdir()
    assert read_layout(tmp_path)["version"] == 0
    applied = migrate_data_dir(tmp_path, state=None, steps=STEPS)
    assert [s.version for s in applied] == [s.version for s in STEPS]
    layout = json.loads((tmp_path / "layout.json").read_text())
    assert layout["version"] == STEPS[-1].version and layout["steps"][0]["version"] == 1
    assert migrate_data_dir(tmp_path, state=None, steps=STEPS) == []
    assert [s.version for s in ALL_STEPS] == list(range(1, len(ALL_STEPS) + 1))


def test_a_failed_step_is_not_recorded_and_runs_again(tmp_path: Path) -> None:
    calls: list[int] = []

    def flaky(ctx: DataContext) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("disk full")
        (ctx.data_dir / "moved").write_text("done")

    steps = [*STEPS, DataStep(len(STEPS) + 1, "move things", flaky)]
    with pytest.raises(OSError):
        migrate_data_dir(tmp_path, None, steps=steps)
    assert read_layout(tmp_path)["version"] == len(STEPS)
    assert [s.name for s in migrate_data_dir(tmp_path, None, steps=steps)] == ["move things"]
    assert (tmp_path / "moved").read_text() == "done" and len(calls) == 2


def test_a_newer_layout_is_refused(tmp_path: Path) -> None:
    (tmp_path / "layout.json").write_text(json.dumps({"version": 99, "steps": []}))
    with pytest.raises(LayoutError, match="layout version 99"):
        pending_steps(tmp_path)


def test_a_garbled_record_is_an_error_not_a_reset(tmp_path: Path) -> None:
    (tmp_path / "layout.json").write_text("{not json")
    with pytest.raises(LayoutError, match="restore it from a backup"):
        read_layout(tmp_path)


def test_concurrent_migrators_apply_each_step_once(tmp_path: Path) -> None:
    runs: list[int] = []
    gate = threading.Barrier(4)

    def slow(ctx: DataContext) -> None:
        runs.append(1)

    steps = [*STEPS, DataStep(len(STEPS) + 1, "slow", slow)]

    def migrate() -> None:
        gate.wait()
        migrate_data_dir(tmp_path, None, steps=steps)

    threads = [threading.Thread(target=migrate) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert runs == [1]
