"""Resumable uploads (``/api/v1/uploads``): a large file sent in pieces that survive a
broken connection. See :mod:`.uploads` and docs/protocol.md (Files)."""

from __future__ import annotations

import os
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.requests import ClientDisconnect

from morag_worker.protocol import UploadCreate, UploadState
from morag_worker.server.apierror import ApiError
from morag_worker.server.auth import Caller
from morag_worker.server.deps import caller, require, state
from morag_worker.server.limits import error_responses
from morag_worker.server.multipart import MAX_FILENAME_BYTES
from morag_worker.server.state import ServerState

router = APIRouter(
    prefix="/api/v1/uploads",
    tags=["uploads"],
    responses={
        **error_responses(401, 403, 408),
        404: {"description": "no such upload of this user (never made, used, or expired)"},
    },
)

#: The header that says where a piece starts (as tus.io's protocol names it).
OFFSET_HEADER = "Upload-Offset"


@router.post("", status_code=201, response_model=UploadState, responses=error_responses(413))
async def create_upload(
    body: UploadCreate, who: Caller = Depends(caller), st: ServerState = Depends(state)
) -> Any:
    """Start a resumable upload of a file of ``size`` bytes; send it with ``PATCH``."""
    require(who, "user", "admin")
    name = os.path.basename(body.name)
    try:
        size = len(name.encode())
    except UnicodeEncodeError:  # a lone surrogate: no file system takes it
        size = MAX_FILENAME_BYTES + 1
    if not name or size > MAX_FILENAME_BYTES:
        raise ApiError(
            422,
            "invalid",
            f"name: a file name of 1 to {MAX_FILENAME_BYTES} bytes of UTF-8 is needed; "
            "rename the file",
            "name",
        )
    if body.size > st.config.max_upload_bytes:
        raise ApiError(
            413,
            "file_too_large",
            f"file {name!r} has {body.size} bytes, over the upload limit of "
            f"{st.config.max_upload_bytes} bytes (the server's --max-upload-bytes)",
            "size",
        )
    return st.uploads.create(who.user_id, name, body.size).public()


@router.get("/{upload_id}", response_model=UploadState)
async def get_upload(
    upload_id: str, who: Caller = Depends(caller), st: ServerState = Depends(state)
) -> Any:
    """Where an upload stands: ``offset`` is where the next piece must start."""
    require(who, "user", "admin")
    return st.uploads.get(upload_id, who.user_id).public()


@router.patch(
    "/{upload_id}",
    response_model=UploadState,
    responses={
        **error_responses(400, 413, 507),
        409: {"description": "Upload-Offset is not the server's offset, or the upload is busy"},
    },
)
async def append_upload(
    upload_id: str,
    request: Request,
    who: Caller = Depends(caller),
    st: ServerState = Depends(state),
) -> Any:
    """Append the body at ``Upload-Offset`` (which must be the offset the server holds:
    409 ``offset_mismatch`` says which). A body cut off keeps the bytes that arrived."""
    require(who, "user", "admin")
    raw = request.headers.get(OFFSET_HEADER, "")
    if not raw.isdigit():
        raise ApiError(
            400,
            "bad_request",
            f"the {OFFSET_HEADER} header is {'missing' if not raw else repr(raw)}: send the "
            "byte the piece starts at (GET /api/v1/uploads/{id} says it)",
            OFFSET_HEADER,
        )
    declared = request.headers.get("content-length", "")
    session = st.uploads.get(upload_id, who.user_id)
    try:
        session = await st.uploads.append(
            session, int(raw), int(declared) if declared.isdigit() else None, request.stream()
        )
    except ClientDisconnect:
        # The bytes that arrived are kept; nobody is there to read an answer.
        raise ApiError(400, "client_disconnected", "the client went away mid-piece") from None
    st.disk.note_write_ok()
    return session.public()
