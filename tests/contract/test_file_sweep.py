"""The file sweep against SQLite and PostgreSQL: it removes exactly the old files no task
refers to (and abandoned temporary files), on real files in a real store."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from morag_worker.server.db import Database
from morag_worker.server.files import FileStore
from morag_worker.server.queue import QueuePolicy, TaskQueue
from morag_worker.server.sweep import BATCH, FileSweeper


def _store_file(store: FileStore, content: bytes, age_s: float) -> Path:
    digest = hashlib.sha256(content).hexdigest()
    handle, temp = store.new_temp()
    with handle:
        handle.write(content)
    store.commit(temp, digest)
    path = store.root / digest[:2] / digest
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def test_sweep_removes_only_old_unreferenced_files(db: Database, tmp_path: Path) -> None:
    store = FileStore(tmp_path / "files")
    queue = TaskQueue(db, QueuePolicy())
    used = _store_file(store, b"used by a task", age_s=7200)
    queue.submit(
        user_id="alice",
        task_type="document",
        parameters={},
        priority=0,
        files=[(used.name, "used.txt", used.stat().st_size)],
        max_attempts=None,
        timeout_seconds=None,
    )
    # more orphans than one lookup batch holds, so batching is exercised
    orphans = [_store_file(store, f"orphan {i}".encode(), age_s=7200) for i in range(BATCH + 3)]
    young = _store_file(store, b"stored a moment ago", age_s=1)
    handle, in_progress = store.new_temp()  # an upload still arriving
    handle.close()
    os.utime(in_progress, (0, 0))
    abandoned = store.tmp / "upload-abandoned"
    abandoned.write_bytes(b"partial")
    os.utime(abandoned, (0, 0))

    removed, freed = FileSweeper(store, queue.referenced_files, grace_s=3600).sweep()

    assert removed == len(orphans) + 1
    assert freed == sum(len(f"orphan {i}") for i in range(BATCH + 3)) + len(b"partial")
    assert not any(path.exists() for path in orphans) and not abandoned.exists()
    assert used.exists() and young.exists() and in_progress.exists()
    assert FileSweeper(store, queue.referenced_files, grace_s=3600).sweep() == (0, 0)
