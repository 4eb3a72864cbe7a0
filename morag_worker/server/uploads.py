"""Resumable uploads: a file sent in pieces, each appended at the offset the server has.

A session (``POST /api/v1/uploads`` with the file's name and size) is two files in the
store's temp dir: ``session-<id>`` (the bytes so far) and ``session-<id>.json`` (owner,
name, size). ``PATCH`` appends a body at ``Upload-Offset``, which must be the size the
server holds; a body cut off keeps what arrived, so the client asks ``GET`` for the
offset and sends the rest. Once every byte is there, a JSON task submission names the
session in ``uploads`` and the file moves into the content-addressed store like a
multipart upload (:meth:`FileStore.commit`).

The sha256 is computed while the bytes arrive; the running hash lives in this process
(a piece hashed is never read again). After a restart, or when the pieces went to
another process, the part on disk is hashed once before the next piece is appended.
A session nothing writes to for ``--file-grace`` is removed by the file sweep, like a
partial multipart upload (its two files' times move with every piece).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from morag_worker.server.apierror import ApiError
from morag_worker.server.files import FileStore, StoredFile
from morag_worker.server.pump import pump

PREFIX = "session-"
#: Pieces read back when a running hash must be rebuilt from the part on disk.
REHASH_PIECE = 1 << 20
#: While a piece arrives, the session's metadata file is touched this often (or at a
#: quarter of ``--file-grace`` if that is shorter), so that a piece that takes longer
#: than the grace is not swept from under the request.
TOUCH_EVERY_S = 60.0


@dataclass
class Session:
    upload_id: str
    user_id: str
    name: str
    size: int
    offset: int
    sha256: str = ""

    def public(self) -> dict[str, Any]:
        return {
            "upload_id": self.upload_id,
            "name": self.name,
            "size": self.size,
            "offset": self.offset,
            "complete": self.offset == self.size,
        }


def _is_upload_id(upload_id: str) -> bool:
    return (
        len(upload_id) == 34
        and upload_id.startswith("u_")
        and all(c in "0123456789abcdef" for c in upload_id[2:])
    )


class _Running:
    """A running hash and the offset it has seen, for one session in this process."""

    def __init__(self, digest: Any, offset: int) -> None:
        self.digest = digest
        self.offset = offset


class UploadSessions:
    def __init__(self, store: FileStore, grace_s: float = 3600.0) -> None:
        self.store = store
        self.touch_every_s = min(TOUCH_EVERY_S, grace_s / 4)
        self._hashes: dict[str, _Running] = {}
        self._busy: set[str] = set()

    def _paths(self, upload_id: str) -> tuple[Path, Path]:
        data = self.store.tmp / f"{PREFIX}{upload_id}"
        return data, data.with_name(data.name + ".json")

    def create(self, user_id: str, name: str, size: int) -> Session:
        upload_id = "u_" + secrets.token_hex(16)
        data, meta = self._paths(upload_id)
        fd = os.open(data, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        body = {"user_id": user_id, "name": name, "size": size, "created_at": time.time()}
        fd = os.open(meta, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(body, handle)
        self._hashes[upload_id] = _Running(hashlib.sha256(), 0)
        session = Session(upload_id, user_id, name, size, 0)
        if size == 0:  # complete as it is
            session.sha256 = hashlib.sha256().hexdigest()
            meta.write_text(json.dumps({**body, "sha256": session.sha256}))
        return session

    def get(self, upload_id: str, user_id: str) -> Session:
        """The caller's session; 404 for an unknown, expired or another user's one."""
        data, meta = self._paths(upload_id) if _is_upload_id(upload_id) else (None, None)
        try:
            if data is None or meta is None:
                raise FileNotFoundError
            body = json.loads(meta.read_text())
            offset = data.stat().st_size
        except (OSError, ValueError):
            body = None
        if body is None or body.get("user_id") != user_id:
            raise ApiError(
                404,
                "not_found",
                f"upload {upload_id} not found: it never existed, belongs to another user, "
                "was used by a task already, or nothing was sent to it for the server's "
                "--file-grace; start a new upload",
            )
        return Session(
            upload_id, user_id, body["name"], int(body["size"]), offset, body.get("sha256", "")
        )

    async def append(
        self, session: Session, offset: int, declared: int | None, stream: AsyncIterator[bytes]
    ) -> Session:
        """Append the body at ``offset``; returns the session with its new offset.

        A body that breaks off keeps the bytes that arrived, and the error propagates.
        """
        if offset != session.offset:
            raise ApiError(
                409,
                "offset_mismatch",
                f"Upload-Offset {offset}: the server holds {session.offset} bytes of upload "
                f"{session.upload_id}; send from byte {session.offset}",
                details={"offset": session.offset},
            )
        room = session.size - session.offset
        if declared is not None and declared > room:
            raise ApiError(
                413,
                "file_too_large",
                f"the body has {declared} bytes but upload {session.upload_id} has room for "
                f"{room} more (its size is {session.size}); send only the rest of the file",
            )
        if session.upload_id in self._busy:
            raise ApiError(
                409,
                "upload_busy",
                f"another request is still writing upload {session.upload_id}; wait until it "
                "ends (a cut-off request ends when the server sees its connection close), "
                "then ask GET /api/v1/uploads/{id} for the offset",
            )
        self._busy.add(session.upload_id)
        try:
            return await self._append(session, stream)
        finally:
            self._busy.discard(session.upload_id)

    async def _append(self, session: Session, stream: AsyncIterator[bytes]) -> Session:
        data, meta = self._paths(session.upload_id)
        running = self._hashes.get(session.upload_id)
        if running is None or running.offset != session.offset:
            running = await asyncio.to_thread(_rehash, data, session.offset)
            self._hashes[session.upload_id] = running
        written = session.offset
        touched = time.monotonic()
        with data.open("r+b") as handle:
            handle.seek(session.offset)

            def consume(pieces: list[bytes]) -> None:
                nonlocal written, touched
                if time.monotonic() - touched > self.touch_every_s:
                    # A piece that takes longer than the sweep's grace keeps both files
                    # young (the data file's time moves with each write already).
                    touched = time.monotonic()
                    with contextlib.suppress(OSError):
                        os.utime(meta)
                for piece in pieces:
                    if written + len(piece) > session.size:
                        raise ApiError(
                            413,
                            "file_too_large",
                            f"the body runs past the size of upload {session.upload_id} "
                            f"({session.size} bytes); the bytes up to it were kept",
                        )
                    handle.write(piece)
                    running.digest.update(piece)
                    written += len(piece)
                    running.offset = written

            try:
                await pump(stream, consume)
            finally:
                with contextlib.suppress(OSError):
                    handle.flush()
                    handle.truncate(written)  # what a failed write may have left past it
                now = time.time()
                with contextlib.suppress(OSError):
                    os.utime(meta, (now, now))
        session.offset = written
        if written == session.size:
            await asyncio.to_thread(_durable, data)
            session.sha256 = running.digest.hexdigest()
            body = json.loads(meta.read_text())
            body["sha256"] = session.sha256
            meta.write_text(json.dumps(body))
        return session

    def check_complete(self, upload_id: str, user_id: str) -> Session:
        """The caller's session, every byte of it there; 409 while it is not."""
        session = self.get(upload_id, user_id)
        if session.offset != session.size or not session.sha256:
            raise ApiError(
                409,
                "upload_incomplete",
                f"upload {upload_id} has {session.offset} of {session.size} bytes; send the "
                f"rest (PATCH from byte {session.offset}) before submitting the task",
                "uploads",
            )
        return session

    def take(self, upload_id: str, user_id: str) -> StoredFile:
        """Move a complete upload into the store for a task (see :meth:`check_complete`)."""
        session = self.check_complete(upload_id, user_id)
        data, meta = self._paths(upload_id)
        self.store.commit(data, session.sha256)
        meta.unlink(missing_ok=True)
        self._hashes.pop(upload_id, None)
        return StoredFile(session.sha256, session.name, session.size)


def _rehash(path: Path, size: int) -> _Running:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        left = size
        while left > 0 and (piece := handle.read(min(REHASH_PIECE, left))):
            digest.update(piece)
            left -= len(piece)
    return _Running(digest, size)


def _durable(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
