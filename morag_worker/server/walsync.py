"""Group commit for SQLite: acknowledged writes are durable, and share their syncs.

With ``synchronous=FULL`` SQLite syncs the write-ahead log at every commit, inside the
commit, while it holds the database: every submission, claim and heartbeat waits for
the disk, one after another (2-3 ms each on the test VM), and a claim cannot start until
the submission before it has been synced. Here commits run with ``synchronous=NORMAL``
(no sync) and durability is added where it is promised: before the server acknowledges
a write (a 201 for a submission, a 200 for a result), the route waits for a sync of the
WAL file that *started after* its commit finished. One sync covers every commit made
before it began, so concurrent acknowledgements share it, and the database is free for
claims meanwhile. Writes nobody was promised (claims, lease renewals) become durable
with the next sync or checkpoint; losing them to a power loss costs a retry, never a
task (at-least-once with fencing).

A synced WAL holds every frame a crash recovery replays; checkpoints are SQLite's own
(in NORMAL mode it syncs the WAL before and the database after each).
"""

from __future__ import annotations

import os
import threading
import time


class WalSync:
    def __init__(self, wal_path: str) -> None:
        self.wal_path = wal_path
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._inode = 0
        #: time.monotonic() at which the last completed sync started.
        self._covered = float("-inf")
        self.syncs = 0

    def wait(self, committed_at: float) -> None:
        """Block until a sync that started after ``committed_at`` has completed."""
        with self._lock:  # the next sync waits here for this one: that is the grouping
            if self._covered >= committed_at:
                return
            start = time.monotonic()
            fd = self._open()
            if fd is not None:
                os.fsync(fd)
                self.syncs += 1
            self._covered = start

    def _open(self) -> int | None:
        """The WAL file's descriptor, reopened if SQLite replaced the file."""
        try:
            inode = os.stat(self.wal_path).st_ino
        except FileNotFoundError:
            return None  # no WAL yet: nothing has been written
        if self._fd is None or inode != self._inode:
            if self._fd is not None:
                os.close(self._fd)
            self._fd = os.open(self.wal_path, os.O_RDONLY)
            self._inode = inode
        return self._fd

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
