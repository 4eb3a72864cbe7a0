"""This worker's own infrastructure: free disk space and whether the work dir is usable.

A task that fails because the worker's disk is full, its work dir is not writable or it
ran out of file handles has done nothing wrong: it goes back to the server unattempted
(:func:`is_infra_error` tells such failures apart), and this worker stops leasing until
:class:`DiskGuard` sees the condition gone. Leasing also stops before that happens, when
free space falls under ``--min-free-disk``.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

#: OS errors that are the worker's, not the task's.
INFRA_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EMFILE, errno.ENFILE, errno.EACCES}
)
#: After an infrastructure failure, wait at least this long before leasing again (the
#: pause doubles on repeats after a pause ended, up to the cap): a disk that filled once
#: fills again quickly. Failures during a pause (tasks already in flight) do not double it.
PAUSE_BASE_S = 5.0
PAUSE_CAP_S = 300.0


def is_infra_error(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is an infrastructure errno."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 8:
        if isinstance(current, OSError) and current.errno in INFRA_ERRNOS:
            return True
        current = current.__cause__ or current.__context__
        seen += 1
    return False


def describe_infra(exc: BaseException) -> str:
    code = getattr(exc, "errno", None)
    name = errno.errorcode.get(code, "") if isinstance(code, int) else ""
    return f"{name + ': ' if name else ''}{exc}"[:500]


@dataclass(frozen=True)
class DiskReading:
    free_bytes: int
    total_bytes: int


class DiskGuard:
    """Decides whether this worker may lease, from the work dir's state."""

    def __init__(self, work_root: Path, min_free_bytes: int) -> None:
        self.work_root = work_root
        self.min_free_bytes = min_free_bytes
        self.reading = DiskReading(0, 0)
        #: Why leasing is paused ("" = it is not).
        self.problem = ""
        self._paused_until = 0.0
        self._pauses = 0

    def report(self, what: str, now: float | None = None) -> None:
        """An infrastructure failure happened: pause leasing for a while, and until the
        work dir checks out again."""
        now = time.monotonic() if now is None else now
        self.problem = what
        if now < self._paused_until:
            # Tasks already in flight failing the same way: the same episode, not a
            # repeat (three prefetched downloads failing together paused 20 s, not 5).
            return
        self._pauses += 1
        self._paused_until = now + min(PAUSE_CAP_S, PAUSE_BASE_S * 2 ** (self._pauses - 1))

    def check(self, now: float | None = None) -> str:
        """Look at the work dir now; returns the problem ("" when leasing may go on)."""
        now = time.monotonic() if now is None else now
        problem = self._inspect()
        if not problem and now < self._paused_until:
            problem = self.problem or "recovering from an infrastructure failure"
        if not problem and self.problem:
            self._pauses = 0  # recovered: the next failure starts the backoff afresh
        self.problem = problem
        return problem

    def _inspect(self) -> str:
        try:
            usage = shutil.disk_usage(self.work_root)
        except OSError as exc:
            return f"work dir {self.work_root} is unusable: {describe_infra(exc)}"
        self.reading = DiskReading(usage.free, usage.total)
        if usage.free < self.min_free_bytes:
            return (
                f"work dir {self.work_root} has {usage.free >> 20} MiB free, under "
                f"--min-free-disk {self.min_free_bytes >> 20} MiB"
            )
        try:
            with tempfile.TemporaryFile(dir=self.work_root):
                pass
        except OSError as exc:
            return f"work dir {self.work_root} is not writable: {describe_infra(exc)}"
        if not os.access(self.work_root, os.W_OK | os.X_OK):
            return f"work dir {self.work_root} is not writable"
        return ""
