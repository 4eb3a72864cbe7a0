"""Disk space as the server sees it: recognising a full disk in any error, and the state
``/health`` reports (docs/operations.md, "When the disk is full").

A full disk is not a crash: requests that need space are answered 507 with nothing of
them kept, everything else keeps working, and the server recovers by itself as soon as
space returns. ``/health`` stays 200 (restarting cannot free space, and a liveness probe
must not restart a server that still serves reads and leases) but says ``degraded``.
"""

from __future__ import annotations

import errno
import shutil
import sqlite3
import time
from pathlib import Path

from loguru import logger

#: A failed write keeps /health degraded this long unless a write succeeds before.
FULL_REPORT_S = 300.0
#: SQLSTATE of PostgreSQL's disk_full.
PG_DISK_FULL = "53100"


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a write refused for lack of space."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if isinstance(seen, sqlite3.Error) and (
            getattr(seen, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
            or "database or disk is full" in str(seen)
        ):
            return True
        if getattr(seen, "sqlstate", None) == PG_DISK_FULL:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class DiskMonitor:
    """Free space under the data dir and the last write refused for lack of it."""

    def __init__(self, path: Path, min_free_bytes: int) -> None:
        self.path = path
        self.min_free_bytes = min_free_bytes
        self.full_at: float | None = None
        self.full_during = ""

    def note_full(self, during: str) -> None:
        if self.full_at is None:
            logger.warning("disk full while {}: answering 507 until space returns", during)
        self.full_at = time.time()
        self.full_during = during

    def note_write_ok(self) -> None:
        if self.full_at is not None:
            logger.info("disk space is back: writes succeed again")
        self.full_at = None

    def free_bytes(self) -> int | None:
        try:
            return shutil.disk_usage(self.path).free
        except OSError:
            return None

    def problems(self) -> list[str]:
        """What /health reports as degraded, in words an operator can act on."""
        found = []
        free = self.free_bytes()
        if free is not None and free < self.min_free_bytes:
            found.append(
                f"disk: {free} bytes free under the data dir, below --min-free-disk-bytes "
                f"({self.min_free_bytes}); free space or grow the volume"
            )
        if self.full_at is not None and time.time() - self.full_at < FULL_REPORT_S:
            found.append(
                f"disk: a write failed for lack of space {time.time() - self.full_at:.0f} s ago "
                f"({self.full_during}); none has succeeded since"
            )
        return found
