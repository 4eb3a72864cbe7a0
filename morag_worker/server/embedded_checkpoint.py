"""Checkpoints of the embedded store's WAL on a thread of their own (see .embedded_store).

SQLite checkpoints a WAL database inside the commit that crosses ``wal_autocheckpoint``
pages: that commit copies every page written since the last checkpoint into the database
file and syncs it. For upserts into a million points this was two thirds of the commit
and a third of the upsert (each point dirties a page of the random point-id index). Here
a thread with its own connection runs a PASSIVE checkpoint every ``interval_s``: it
copies what is committed while writers go on appending, so upserts only write the WAL.
The writer's own ``wal_autocheckpoint`` stays as the bound should this thread fall
behind. Crash safety is unchanged: a commit is in the WAL before it returns, and the WAL
is replayed at open whatever the checkpoints did.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from loguru import logger


class Checkpointer:
    """Checkpoints ``path``'s WAL every ``interval_s`` until :meth:`close`."""

    def __init__(self, path: Path, interval_s: float) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA synchronous=NORMAL")  # syncs the WAL, then the database
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error as exc:  # the writer checkpoints itself meanwhile
                logger.warning("vector store: background checkpoint failed: {}", exc)

    def close(self) -> None:
        """Stop the thread and close its connection; idempotent."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=60)
        if not self._thread.is_alive():  # else it dies with the process, connection and all
            self._db.close()
