"""The embedded store's checkpoint thread copies committed WAL pages into the database
file while the writer, which no longer checkpoints at 1,000 pages, goes on."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from morag_worker.server.embedded_checkpoint import Checkpointer


def test_committed_pages_reach_the_database_file_without_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "points.sqlite3"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")  # only the thread checkpoints here
    writer.execute("CREATE TABLE t (blob BLOB)")
    writer.executemany("INSERT INTO t VALUES (?)", [(bytes(4096),) for _ in range(256)])
    assert path.stat().st_size < 1 << 20  # committed, but only in the WAL so far
    checkpointer = Checkpointer(path, interval_s=0.05)
    try:
        for _ in range(600):
            if path.stat().st_size >= 1 << 20:
                break
            time.sleep(0.05)
        assert path.stat().st_size >= 1 << 20
        writer.execute("INSERT INTO t VALUES (x'00')")  # the writer is not blocked
    finally:
        checkpointer.close()
        checkpointer.close()  # idempotent
    assert writer.execute("SELECT count(*) FROM t").fetchone()[0] == 257
    writer.close()
