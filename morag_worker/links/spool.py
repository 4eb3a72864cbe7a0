"""Results waiting for delivery, kept on disk so that no restart loses them.

A server without leases (MoRAG's remote-jobs API) never gives a job to another worker:
a result that does not reach it is lost for good. Each result is written here before
its first upload attempt (one JSON file per job: the exact body to send, written to a
temporary name, flushed to disk, then renamed), and removed once the server has
answered for it. What is left is sent again later in this run and after a restart.

The directory lives under ``--state-dir``, one per server, never under the work dir
(which is removed at exit). Files are 0600 in a 0700 directory: results hold the
content of the users' files.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

from loguru import logger

#: Job ids that are safe as file names (and as URL path segments).
SPOOL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
#: Retry of a kept result: base * 2^n, capped; a server that keeps refusing is asked
#: about once a minute instead of on every poll.
RETRY_BASE_S = 1.0
RETRY_CAP_S = 60.0


def spool_dir(state_dir: Path, server_url: str) -> Path:
    """The spool of one server: results for another server's jobs never go to this one."""
    digest = hashlib.sha256(server_url.rstrip("/").encode()).hexdigest()[:12]
    return state_dir / "remote-jobs" / digest / "results"


class ResultSpool:
    def __init__(self, root: Path, server_url: str) -> None:
        self.root = root
        self._lock = threading.Lock()
        self._retry_at: dict[str, tuple[int, float]] = {}
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(root, 0o700)
        note = root.parent / "server.txt"  # which server these results belong to
        if not note.exists():
            note.write_text(server_url.rstrip("/") + "\n")

    def _path(self, job_id: str) -> Path:
        if not SPOOL_ID.match(job_id):
            raise ValueError(f"job id {job_id!r} cannot name a file")
        return self.root / f"{job_id}.json"

    def put(self, job_id: str, body: dict[str, Any]) -> None:
        """Keep ``body`` for ``job_id`` durably (replacing an earlier one)."""
        final = self._path(job_id)
        temp = final.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        data = json.dumps({"job_id": job_id, "body": body, "kept_at": time.time()})
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, final)
        _fsync_dir(self.root)
        with self._lock:
            self._retry_at.pop(job_id, None)

    def remove(self, job_id: str) -> None:
        self._path(job_id).unlink(missing_ok=True)
        with self._lock:
            self._retry_at.pop(job_id, None)

    def body(self, job_id: str) -> dict[str, Any] | None:
        """The kept body; None when it is gone or unreadable (set aside as ``.bad``)."""
        path = self._path(job_id)
        try:
            kept = json.loads(path.read_text())
            body = kept["body"]
            if not isinstance(body, dict):
                raise TypeError("body is not an object")
            return body
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.error("kept result {} is unreadable ({}); set aside as .bad", path, exc)
            path.replace(path.with_suffix(".bad"))
            return None

    def waiting(self) -> list[str]:
        """Job ids of every kept result, oldest first."""
        try:
            files = sorted(self.root.glob("*.json"), key=lambda p: p.stat().st_mtime)
        except OSError:
            return []
        return [p.stem for p in files if SPOOL_ID.match(p.stem)]

    def due(self, now: float) -> list[str]:
        """Kept results whose next attempt is due."""
        with self._lock:
            retry = dict(self._retry_at)
        return [j for j in self.waiting() if retry.get(j, (0, 0.0))[1] <= now]

    def failed(self, job_id: str, now: float) -> None:
        """Another attempt failed: try again after a longer pause."""
        with self._lock:
            tries = self._retry_at.get(job_id, (0, 0.0))[0] + 1
            pause = min(RETRY_CAP_S, RETRY_BASE_S * 2 ** (tries - 1))
            self._retry_at[job_id] = (tries, now + pause)


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (the directory entry itself)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
