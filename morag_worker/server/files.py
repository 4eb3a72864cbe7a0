"""Content-addressed file store: ``files/<aa>/<sha256>``, with uploads in ``files/tmp``.

An upload is written to a temporary file (mode 0600, in a 0700 directory) and renamed
into place only once its request has been validated (see :mod:`.multipart`), so a refused
request keeps nothing. Temporary files in use are tracked, so that the sweep
(:mod:`.sweep`) never removes an upload that is still arriving.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

#: Owner-only: uploads are users' documents and recordings.
DIR_MODE = 0o700


@dataclass
class StoredFile:
    file_id: str
    name: str
    size: int


def is_file_id(name: str) -> bool:
    return len(name) == 64 and all(c in "0123456789abcdef" for c in name)


class FileStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"
        for path in (self.root, self.tmp):
            path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            os.chmod(path, DIR_MODE)
        #: Temporary files of uploads in progress in this process.
        self.active: set[Path] = set()

    def path(self, file_id: str) -> Path | None:
        if not is_file_id(file_id):
            return None
        path = self.root / file_id[:2] / file_id
        return path if path.exists() else None

    def new_temp(self) -> tuple[IO[bytes], Path]:
        fd, name = tempfile.mkstemp(dir=self.tmp, prefix="upload-")
        self.active.add(Path(name))
        return os.fdopen(fd, "wb"), Path(name)

    def discard_temp(self, temp: Path) -> None:
        """Remove a temporary file; never raises (it runs on failure paths)."""
        self.active.discard(temp)
        with contextlib.suppress(OSError):
            temp.unlink(missing_ok=True)

    def commit(self, temp: Path, sha256: str) -> bool:
        """Move a finished upload into place; returns whether the file is new.

        An identical file already there wins, and its time is refreshed so that the sweep
        gives it a full grace period before the task that will use it is recorded.
        """
        final = self.root / sha256[:2] / sha256
        final.parent.mkdir(mode=DIR_MODE, exist_ok=True)
        try:
            if final.exists():
                now = time.time()
                os.utime(final, (now, now))
                return False
            os.replace(temp, final)
            return True
        finally:
            self.discard_temp(temp)
