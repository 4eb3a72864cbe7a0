"""The file sweep: removes stored files that no task refers to, and partial uploads that
nothing is writing any more, once they are older than a grace period.

Requests clean up after themselves; the sweep collects what a killed process could not:
a partial upload in ``files/tmp`` (the server was killed mid-upload) or a stored file
whose task was never recorded (killed, or the database refused, between the two).
The grace period protects the moment between storing a file and recording its task, and
uploads that are still arriving (their files' times move with every write; uploads of
this process are also known by name). Removed files and bytes are counted in
``morag_server_files_reclaimed_total`` and ``morag_server_files_reclaimed_bytes_total``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from morag_worker.server.files import FileStore, is_file_id
from morag_worker.server.metrics import FILES_RECLAIMED, FILES_RECLAIMED_BYTES

#: Stored files looked up in one query.
BATCH = 500


class FileSweeper:
    def __init__(
        self, store: FileStore, referenced: Callable[[list[str]], set[str]], grace_s: float
    ) -> None:
        self.store = store
        #: Which of the given file ids some task refers to (the queue answers).
        self.referenced = referenced
        self.grace_s = grace_s

    @property
    def interval_s(self) -> float:
        """A quarter of the grace, so a file outlives it by at most a quarter; at most
        every 10 minutes, since the walk reads the whole store."""
        return min(600.0, max(0.5, self.grace_s / 4))

    def sweep(self) -> tuple[int, int]:
        """One pass; returns (files removed, bytes freed)."""
        cutoff = time.time() - self.grace_s
        removed = freed = 0
        for path in self._old_temps(cutoff):
            size = _remove_if_old(path, cutoff)
            if size is not None:
                removed, freed = removed + 1, freed + size
        batch: list[Path] = []
        for path in self._old_stored(cutoff):
            batch.append(path)
            if len(batch) >= BATCH:
                n, size = self._remove_unreferenced(batch, cutoff)
                removed, freed, batch = removed + n, freed + size, []
        n, size = self._remove_unreferenced(batch, cutoff)
        removed, freed = removed + n, freed + size
        FILES_RECLAIMED.inc(removed)
        FILES_RECLAIMED_BYTES.inc(freed)
        return removed, freed

    def _old_temps(self, cutoff: float) -> Iterator[Path]:
        for entry in _scan(self.store.tmp):
            path = Path(entry.path)
            if entry.is_file() and path not in self.store.active and _mtime(entry) < cutoff:
                yield path

    def _old_stored(self, cutoff: float) -> Iterator[Path]:
        for prefix in _scan(self.store.root):
            if len(prefix.name) != 2 or not prefix.is_dir():
                continue
            for entry in _scan(Path(prefix.path)):
                if is_file_id(entry.name) and entry.is_file() and _mtime(entry) < cutoff:
                    yield Path(entry.path)

    def _remove_unreferenced(self, paths: list[Path], cutoff: float) -> tuple[int, int]:
        if not paths:
            return 0, 0
        referenced = self.referenced([path.name for path in paths])
        removed = freed = 0
        for path in paths:
            if path.name in referenced:
                continue
            size = _remove_if_old(path, cutoff)
            if size is not None:
                removed, freed = removed + 1, freed + size
        return removed, freed


def _scan(path: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as entries:
            return list(entries)
    except OSError:
        return []


def _mtime(entry: os.DirEntry[str]) -> float:
    try:
        return entry.stat().st_mtime
    except OSError:
        return float("inf")


def _remove_if_old(path: Path, cutoff: float) -> int | None:
    """Unlink ``path`` if it is still older than ``cutoff`` (checked again just before: a
    new upload of the same content refreshes its time); returns its size if removed."""
    try:
        stat = path.stat()
        if stat.st_mtime >= cutoff:
            return None
        path.unlink()
    except OSError:
        return None
    return stat.st_size
