"""Content-addressed file store and the streaming multipart reader for uploads.

Uploads are parsed as they arrive (python-multipart's push parser), hashed while they
are written to a temporary file, and renamed into ``files/<aa>/<sha256>`` only when
complete. The size limit is enforced while streaming: an upload that crosses it is
abandoned at once and its temporary file removed, so nothing of it is kept.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from python_multipart.multipart import MultipartParser, parse_options_header

#: Text fields (task_type, parameters JSON, priority) are small; a megabyte is generous.
MAX_FIELD_BYTES = 1 << 20
#: Multipart field names that carry uploaded files ("file" for single-file clients).
FILE_FIELDS = ("files", "file")
#: Files per task: a task is one document or recording plus perhaps a few companions.
MAX_FILES = 32


class UploadError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field


@dataclass
class StoredFile:
    file_id: str
    name: str
    size: int


class FileStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, file_id: str) -> Path | None:
        if len(file_id) != 64 or any(c not in "0123456789abcdef" for c in file_id):
            return None
        path = self.root / file_id[:2] / file_id
        return path if path.exists() else None

    def new_temp(self) -> tuple[IO[bytes], Path]:
        fd, name = tempfile.mkstemp(dir=self.tmp, prefix="upload-")
        return os.fdopen(fd, "wb"), Path(name)

    def commit(self, temp: Path, sha256: str) -> str:
        """Move a finished upload into place; an identical file already there wins."""
        final = self.root / sha256[:2] / sha256
        final.parent.mkdir(exist_ok=True)
        if final.exists():
            temp.unlink()
        else:
            os.replace(temp, final)
        return sha256


@dataclass
class _Part:
    headers: dict[str, bytes] = field(default_factory=dict)
    name: str = ""
    filename: str | None = None
    data: bytearray = field(default_factory=bytearray)
    handle: IO[bytes] | None = None
    temp: Path | None = None
    digest: Any = None
    size: int = 0


class MultipartUpload:
    """Reads one ``multipart/form-data`` body: text fields plus files into the store."""

    def __init__(self, store: FileStore, content_type: str, max_file_bytes: int) -> None:
        ctype, options = parse_options_header(content_type)
        boundary = options.get(b"boundary")
        if ctype != b"multipart/form-data" or not boundary:
            raise UploadError(
                415, "unsupported_media_type", "expected multipart/form-data with a boundary"
            )
        self.store = store
        self.max_file_bytes = max_file_bytes
        self.fields: dict[str, str] = {}
        self.files: list[StoredFile] = []
        self._part = _Part()
        self._header_field = b""
        self._header_value = b""
        # Finished files wait in the temp dir until the whole body has arrived, so an
        # upload that fails halfway keeps nothing at all.
        self._pending: list[tuple[Path, str, str, int]] = []
        self._parser = MultipartParser(boundary, self._callbacks())

    def _callbacks(self) -> Any:
        return {
            "on_part_begin": self._part_begin,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_header_field": lambda d, s, e: self._header_acc("_header_field", d[s:e]),
            "on_header_value": lambda d, s, e: self._header_acc("_header_value", d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
        }

    def _header_acc(self, attr: str, chunk: bytes) -> None:
        setattr(self, attr, getattr(self, attr) + chunk)

    def _part_begin(self) -> None:
        self._part = _Part()

    def _header_end(self) -> None:
        self._part.headers[self._header_field.decode("latin-1").lower()] = self._header_value
        self._header_field = self._header_value = b""

    def _headers_finished(self) -> None:
        part = self._part
        _, options = parse_options_header(part.headers.get("content-disposition", b""))
        part.name = options.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in options:
            if part.name not in FILE_FIELDS:
                raise UploadError(
                    422,
                    "invalid",
                    f"{part.name}: unknown file field; send uploads in the multipart field 'files'",
                    part.name,
                )
            if len(self._pending) >= MAX_FILES:
                raise UploadError(
                    413, "too_many_files", f"at most {MAX_FILES} files per task", "files"
                )
            part.filename = os.path.basename(options[b"filename"].decode("utf-8", "replace"))
            part.handle, part.temp = self.store.new_temp()
            part.digest = hashlib.sha256()

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        part = self._part
        chunk = data[start:end]
        part.size += len(chunk)
        if part.handle is None:
            if part.size > MAX_FIELD_BYTES:
                raise UploadError(
                    413,
                    "field_too_large",
                    f"form field {part.name!r} exceeds {MAX_FIELD_BYTES} bytes",
                    part.name,
                )
            part.data += chunk
            return
        if part.size > self.max_file_bytes:
            raise UploadError(
                413,
                "file_too_large",
                f"file {part.filename!r} exceeds the upload limit of {self.max_file_bytes} bytes",
                part.name,
            )
        part.digest.update(chunk)
        part.handle.write(chunk)

    def _part_end(self) -> None:
        part = self._part
        if part.handle is None:
            self.fields[part.name] = part.data.decode("utf-8", "replace")
            return
        part.handle.flush()
        os.fsync(part.handle.fileno())
        part.handle.close()
        part.handle = None
        assert part.temp is not None
        self._pending.append(
            (part.temp, part.digest.hexdigest(), part.filename or "upload", part.size)
        )
        part.temp = None

    async def read(self, stream: AsyncIterator[bytes]) -> None:
        """Consume the body; on any error every temporary file of this upload is removed."""
        try:
            async for chunk in stream:
                if chunk:
                    self._parser.write(chunk)
            self._parser.finalize()
        except BaseException:
            self.abort()
            raise
        for temp, sha256, name, size in self._pending:
            self.files.append(StoredFile(self.store.commit(temp, sha256), name, size))
        self._pending.clear()

    def abort(self) -> None:
        """Remove every temporary file of this upload."""
        part = self._part
        if part.handle is not None:
            part.handle.close()
        if part.temp is not None:
            part.temp.unlink(missing_ok=True)
        for temp, *_ in self._pending:
            temp.unlink(missing_ok=True)
        self._pending.clear()
