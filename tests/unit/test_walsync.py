"""Group commit on SQLite: acknowledged writes wait for one shared sync of the WAL."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from morag_worker.server.db import Database
from morag_worker.server.migrate import Migrator
from morag_worker.server.walsync import WalSync


def test_one_sync_covers_every_commit_made_before_it_started(tmp_path: Path) -> None:
    wal = tmp_path / "db-wal"
    wal.write_bytes(b"frames")
    sync = WalSync(str(wal))
    committed = time.monotonic()
    sync.wait(committed)
    assert sync.syncs == 1
    sync.wait(committed)  # already covered: no second sync
    assert sync.syncs == 1
    sync.wait(time.monotonic())  # committed after the last sync started: needs its own
    assert sync.syncs == 2


def test_concurrent_acknowledgements_share_syncs(tmp_path: Path) -> None:
    wal = tmp_path / "db-wal"
    wal.write_bytes(b"frames")
    sync = WalSync(str(wal))
    gate = threading.Barrier(16)

    def acknowledge() -> None:
        gate.wait()
        sync.wait(time.monotonic())

    threads = [threading.Thread(target=acknowledge) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 1 <= sync.syncs < 16


def test_a_replaced_wal_file_is_reopened(tmp_path: Path) -> None:
    wal = tmp_path / "db-wal"
    wal.write_bytes(b"old")
    sync = WalSync(str(wal))
    sync.wait(time.monotonic())
    first = os.fstat(sync._fd or -1).st_ino
    wal.unlink()
    wal.write_bytes(b"new")
    sync.wait(time.monotonic())
    assert os.fstat(sync._fd or -1).st_ino != first
    assert sync._fd is not None and os.fstat(sync._fd).st_ino == os.stat(wal).st_ino


def test_full_durability_commits_without_syncing_and_acknowledges_with_one(
    tmp_path: Path,
) -> None:
    db = Database(f"sqlite:///{tmp_path / 'morag.db'}", "full")
    try:
        Migrator(db).migrate()
        # commits run unsynced; the durability acknowledged writes get is still FULL
        assert db.sqlite_synchronous_in_effect() == "full"
        assert db._conn.execute("PRAGMA synchronous").fetchone()[0] == 1
        db.make_durable(time.monotonic())
        assert db._wal is not None and db._wal.syncs == 1
    finally:
        db.close()
    normal = Database(f"sqlite:///{tmp_path / 'other.db'}", "normal")
    try:
        assert normal.sqlite_synchronous_in_effect() == "normal" and normal._wal is None
    finally:
        normal.close()
