"""The streaming ``multipart/form-data`` reader for task submissions.

Uploads are parsed as they arrive (python-multipart's push parser) and hashed while they
are written to temporary files. Nothing is stored until the caller has validated the
whole request and calls :meth:`MultipartUpload.commit`; on any failure (a refusal, a
malformed or truncated body, a client that goes away, a full disk) :meth:`abort` removes
every temporary file, even when closing the file fails for lack of space.

Malformed bodies are the client's fault and answered as such: 400 for broken syntax,
431 for part headers over python-multipart's limits, 413 for sizes, 422 for fields.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header

from morag_worker.server.apierror import ApiError
from morag_worker.server.files import FileStore, StoredFile
from morag_worker.server.pump import pump

#: Multipart field names that carry uploaded files ("file" for single-file clients).
FILE_FIELDS = ("files", "file")
#: Files per task: a task is one document or recording plus perhaps a few companions.
MAX_FILES = 32
#: A file name is stored and shown as given; longer than a file system allows is a mistake.
MAX_FILENAME_BYTES = 255


def _bad(message: str) -> ApiError:
    return ApiError(400, "bad_multipart", f"malformed multipart body: {message}")


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


@dataclass(frozen=True)
class _Pending:
    temp: Path
    sha256: str
    name: str
    size: int


class MultipartUpload:
    """Reads one ``multipart/form-data`` body: text fields, and files into temporary files."""

    def __init__(
        self, store: FileStore, content_type: str, max_file_bytes: int, max_field_bytes: int
    ) -> None:
        ctype, options = parse_options_header(content_type)
        if ctype != b"multipart/form-data":
            raise ApiError(415, "unsupported_media_type", "expected multipart/form-data")
        boundary = options.get(b"boundary")
        if not boundary:
            raise _bad("the Content-Type has no boundary parameter")
        self.store = store
        self.max_file_bytes = max_file_bytes
        self.max_field_bytes = max_field_bytes
        self.fields: dict[str, str] = {}
        self._part = _Part()
        self._header_field = b""
        self._header_value = b""
        self._pending: list[_Pending] = []
        try:
            self._parser = MultipartParser(boundary, self._callbacks())
        except FormParserError as exc:  # a boundary longer than RFC 2046 allows
            raise _bad(str(exc)) from None

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
        if not options.get(b"name"):
            raise _bad("a part has no Content-Disposition header with a name")
        part.name = options[b"name"].decode("utf-8", "replace")
        if b"filename" not in options:
            return
        if part.name not in FILE_FIELDS:
            raise ApiError(
                422,
                "invalid",
                f"{part.name}: unknown file field; send uploads in the multipart field 'files'",
                part.name,
            )
        if len(self._pending) >= MAX_FILES:
            raise ApiError(413, "too_many_files", f"at most {MAX_FILES} files per task", "files")
        raw_name = os.path.basename(options[b"filename"].decode("utf-8", "replace"))
        if len(raw_name.encode()) > MAX_FILENAME_BYTES:
            raise ApiError(
                422,
                "invalid",
                f"files: a file name of {len(raw_name.encode())} bytes; the limit is "
                f"{MAX_FILENAME_BYTES}: rename the file",
                "files",
            )
        part.filename = raw_name
        part.handle, part.temp = self.store.new_temp()
        part.digest = hashlib.sha256()

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        part = self._part
        chunk = memoryview(data)[start:end]  # no copy: hashed and written at once
        part.size += len(chunk)
        if part.handle is None:
            if part.size > self.max_field_bytes:
                raise ApiError(
                    413,
                    "field_too_large",
                    f"form field {part.name!r} exceeds {self.max_field_bytes} bytes "
                    "(the server's --max-body-bytes)",
                    part.name,
                )
            part.data += chunk
            return
        if part.size > self.max_file_bytes:
            raise ApiError(
                413,
                "file_too_large",
                f"file {part.filename!r} exceeds the upload limit of {self.max_file_bytes} "
                "bytes (the server's --max-upload-bytes)",
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
            _Pending(part.temp, part.digest.hexdigest(), part.filename or "upload", part.size)
        )
        part.temp = None

    @property
    def file_count(self) -> int:
        return len(self._pending)

    async def read(self, stream: AsyncIterator[bytes]) -> None:
        """Consume the whole body; on any error every temporary file is removed.

        Parsing, hashing and writing run on a thread while the next pieces arrive
        (:func:`.pump.pump`).
        """
        try:
            await pump(stream, self._write_all)
            if self._parser.state != MultipartState.END:
                raise _bad("the body ended before its closing boundary")
        except BaseException:
            self.abort()
            raise

    def _write_all(self, chunks: list[bytes]) -> None:
        for chunk in chunks:
            self._write(chunk)

    def _write(self, chunk: bytes) -> None:
        try:
            self._parser.write(chunk)
        except FormParserError as exc:
            if str(exc).startswith("Maximum header"):
                raise ApiError(
                    431,
                    "part_headers_too_large",
                    f"a part's headers are too large or too many ({exc}); "
                    "keep file names and part headers short",
                ) from None
            raise _bad(str(exc)) from None

    def commit(self) -> list[StoredFile]:
        """Move the validated request's files into the store."""
        stored = []
        try:
            while self._pending:
                item = self._pending.pop(0)
                self.store.commit(item.temp, item.sha256)
                stored.append(StoredFile(item.sha256, item.name, item.size))
        finally:
            self.abort()  # whatever was not moved is removed
        return stored

    def abort(self) -> None:
        """Remove every temporary file of this upload; never raises."""
        part = self._part
        if part.handle is not None:
            with contextlib.suppress(OSError):  # ENOSPC while flushing its buffer
                part.handle.close()
            part.handle = None
        if part.temp is not None:
            self.store.discard_temp(part.temp)
            part.temp = None
        for item in self._pending:
            self.store.discard_temp(item.temp)
        self._pending.clear()
