"""User-side endpoints: submit, inspect, cancel, retry and fetch results of tasks; files."""

from __future__ import annotations

import time
from typing import Any

import pydantic_core
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse
from pydantic import ValidationError

from morag_worker.protocol import (
    URL_TASK_TYPES,
    TaskAttemptList,
    TaskCreated,
    TaskInfo,
    TaskList,
    TaskResult,
    TaskResultEnvelope,
    TaskState,
    TaskSubmitJSON,
    TaskTypeList,
    canonical_task_type,
)
from morag_worker.server.apierror import ApiError, invalid
from morag_worker.server.auth import Caller
from morag_worker.server.deps import caller, require, state
from morag_worker.server.files import StoredFile
from morag_worker.server.limits import MAX_PARAMETERS_DEPTH, error_responses, json_depth
from morag_worker.server.multipart import MultipartUpload
from morag_worker.server.paging import BadCursor
from morag_worker.server.queue import NotRetryable, TaskPage
from morag_worker.server.state import DEFAULT_TIMEOUTS_S, ServerState
from morag_worker.server.workers import serving
from morag_worker.task_params import describe, parameter_problem

router = APIRouter(prefix="/api/v1", tags=["tasks"], responses=error_responses(401, 403, 408, 413))


def _check_type(st: ServerState, raw: str) -> str:
    task_type = canonical_task_type(raw)
    if task_type not in st.config.task_types:
        raise ApiError(
            422,
            "invalid",
            f"task_type: unknown type {raw!r}; use one of {', '.join(st.config.task_types)}",
            "task_type",
        )
    return task_type


def _too_deep(depth: str) -> ApiError:
    return ApiError(
        422,
        "invalid",
        f"parameters: nested {depth} levels deep; the limit is {MAX_PARAMETERS_DEPTH} levels "
        "(flatten the options)",
        "parameters",
    )


def _check_parameters(task_type: str, parameters: dict[str, Any], has_files: bool) -> None:
    """Not nested too deep; every parameter known to the type and of its type; the URL or
    the files it needs. The JSON and the multipart forms both come through here."""
    depth = json_depth(parameters)
    if depth > MAX_PARAMETERS_DEPTH:
        raise _too_deep(str(depth))
    problem = parameter_problem(task_type, parameters)
    if problem is not None:
        field, message = problem
        raise ApiError(422, "invalid", f"{field}: {message}", field)
    if task_type in URL_TASK_TYPES:
        url = parameters.get("url")
        if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
            raise ApiError(
                422,
                "invalid",
                f"parameters.url: a {task_type} task needs an http(s) URL in parameters.url",
                "parameters.url",
            )
    elif task_type != "noop" and not has_files:
        raise ApiError(
            422,
            "invalid",
            f"files: a {task_type} task needs at least one uploaded file (multipart field 'files')",
            "files",
        )


def _form_submit(form: dict[str, str]) -> TaskSubmitJSON:
    """Turn multipart text fields into the JSON submit model (same validation)."""
    data: dict[str, Any] = {"task_type": form.get("task_type", "")}
    if "parameters" in form and form["parameters"].strip():
        try:  # the parser of the JSON path, with its nesting limit
            data["parameters"] = pydantic_core.from_json(form["parameters"])
        except ValueError as exc:
            if "recursion limit" in str(exc):
                raise _too_deep("more than 200") from None
            raise ApiError(
                422, "invalid", f"parameters: not valid JSON ({exc})", "parameters"
            ) from None
    for name in ("priority", "max_attempts", "timeout_seconds"):
        if form.get(name, "").strip():
            data[name] = form[name]
    unknown = set(form) - {"task_type", "parameters", "priority", "max_attempts", "timeout_seconds"}
    if unknown:
        raise ApiError(
            422, "invalid", f"{sorted(unknown)[0]}: unknown form field", sorted(unknown)[0]
        )
    try:
        return TaskSubmitJSON.model_validate(data)
    except ValidationError as exc:
        raise invalid(exc.errors()) from None


@router.post(
    "/tasks",
    status_code=201,
    response_model=TaskCreated,
    responses=error_responses(400, 415, 431, 507),
)
async def submit(
    request: Request, who: Caller = Depends(caller), st: ServerState = Depends(state)
) -> TaskCreated:
    """Submit a task: multipart (``task_type``, ``parameters`` JSON, ``priority``, ``files``)
    or JSON ``{task_type, parameters: {url}}`` for URL tasks."""
    require(who, "user", "admin")
    content_type = request.headers.get("content-type", "")
    files: list[StoredFile] = []
    if content_type.startswith("multipart/"):
        spec, task_type, files = await _multipart_submit(request, st, content_type)
    elif content_type and not content_type.startswith("application/json"):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"content type {content_type!r}: send "
            "multipart/form-data (with files) or application/json (URL tasks)",
        )
    else:
        spec = _json_submit(await request.body())
        task_type = _check_type(st, spec.task_type)
        if spec.uploads and task_type in URL_TASK_TYPES:
            raise ApiError(
                422,
                "invalid",
                f"uploads: a {task_type} task reads parameters.url, not files",
                "uploads",
            )
        _check_parameters(task_type, spec.parameters, has_files=bool(spec.uploads))
        files = _take_uploads(st, who, spec.uploads)
    task_id = st.queue.submit(
        user_id=who.user_id,
        task_type=task_type,
        parameters=spec.parameters,
        priority=spec.priority,
        files=[(f.file_id, f.name, f.size) for f in files],
        max_attempts=spec.max_attempts,
        timeout_seconds=spec.timeout_seconds or DEFAULT_TIMEOUTS_S.get(task_type),
    )
    committed = time.monotonic()
    st.disk.note_write_ok()
    # A worker may claim it while the commit is made durable; only the long-polls that
    # could take it wake.
    await st.notifier.notify(task_type, who.user_id)
    await st.acknowledge(committed)
    return TaskCreated(task_id=task_id)


async def _multipart_submit(
    request: Request, st: ServerState, content_type: str
) -> tuple[TaskSubmitJSON, str, list[StoredFile]]:
    """Read the upload, validate the whole request, and only then store its files."""
    upload = MultipartUpload(
        st.files, content_type, st.config.max_upload_bytes, st.config.limits.max_body_bytes
    )
    await upload.read(request.stream())
    try:
        spec = _form_submit(upload.fields)
        task_type = _check_type(st, spec.task_type)
        _check_parameters(task_type, spec.parameters, has_files=upload.file_count > 0)
        return spec, task_type, upload.commit()
    finally:
        upload.abort()  # a refusal keeps nothing (after commit there is nothing left)


def _take_uploads(st: ServerState, who: Caller, upload_ids: list[str]) -> list[StoredFile]:
    """Move the named uploads into the store, once every one of them is complete."""
    if len(set(upload_ids)) != len(upload_ids):
        raise ApiError(422, "invalid", "uploads: an upload is named twice", "uploads")
    for upload_id in upload_ids:  # all checked before any is taken
        st.uploads.check_complete(upload_id, who.user_id)
    return [st.uploads.take(upload_id, who.user_id) for upload_id in upload_ids]


def _json_submit(body: bytes) -> TaskSubmitJSON:
    try:
        return TaskSubmitJSON.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid" and "recursion limit" in first["msg"]:
            raise _too_deep("more than 200") from None  # only parameters may nest
        raise invalid(exc.errors()) from None


#: Tasks per page when the caller does not say: a screenful in a terminal table.
DEFAULT_PAGE = 50
#: Most tasks per page: larger pages hold a request (and the database lock) too long;
#: page through with ``cursor`` instead.
MAX_PAGE = 500
#: Longest search text: a file name is at most 255 bytes, a URL rarely longer.
MAX_SEARCH_CHARS = 512


@router.get("/tasks", response_model=TaskList)
async def list_tasks(
    state_filter: TaskState | None = Query(default=None, alias="state"),
    task_type: str | None = Query(default=None, description="only tasks of this type"),
    limit: int = Query(default=DEFAULT_PAGE, ge=1, le=MAX_PAGE, description="tasks per page"),
    cursor: str = Query(default="", description="next_cursor of the previous page"),
    user_id: str | None = Query(
        default=None, max_length=128, description="only this user's tasks (admins)"
    ),
    created_after: float | None = Query(
        default=None, ge=0, le=1e11, description="created at or after (epoch seconds)"
    ),
    created_before: float | None = Query(
        default=None, ge=0, le=1e11, description="created before (epoch seconds)"
    ),
    q: str | None = Query(
        default=None,
        max_length=MAX_SEARCH_CHARS,
        description="text in the URL or an input file's name (any case), or a task id",
    ),
    who: Caller = Depends(caller),
    st: ServerState = Depends(state),
) -> TaskList:
    """The caller's tasks (an admin's: everyone's, or one user's), newest first, one
    page at a time, filtered by state, type, creation time and text."""
    require(who, "user", "admin")
    if user_id and who.role != "admin" and user_id != who.user_id:
        raise ApiError(
            403, "forbidden", "user_id: only an admin lists another user's tasks", "user_id"
        )
    page = TaskPage(
        state=state_filter.value if state_filter else None,
        task_type=_check_type(st, task_type) if task_type else None,
        limit=limit,
        cursor=cursor,
        owner=user_id or None,
        created_after=created_after,
        created_before=created_before,
        text=q.strip() or None if q else None,
    )
    try:
        tasks, next_cursor = st.queue.list_tasks(who, page)
    except BadCursor as exc:
        raise ApiError(422, "invalid", f"cursor: {exc}", "cursor") from None
    return TaskList(tasks=tasks, next_cursor=next_cursor)


@router.get("/task-types", response_model=TaskTypeList)
async def task_types(
    who: Caller = Depends(caller), st: ServerState = Depends(state)
) -> TaskTypeList:
    """The task types this server accepts, the parameters each takes, and how many online
    workers serve each for the caller (0: a task of that type waits until one comes)."""
    require(who, "user", "admin")
    counts = serving(st.workers.visible(who), st.config.task_types)
    return TaskTypeList(task_types=[describe(t, *counts[t]) for t in st.config.task_types])


@router.get("/tasks/{task_id}", response_model=TaskInfo)
async def get_task(
    task_id: str, who: Caller = Depends(caller), st: ServerState = Depends(state)
) -> TaskInfo:
    require(who, "user", "admin")
    return st.queue.get(task_id, who)


@router.get("/tasks/{task_id}/result", response_model=TaskResultEnvelope)
async def get_result(
    task_id: str, who: Caller = Depends(caller), st: ServerState = Depends(state)
) -> TaskResultEnvelope:
    require(who, "user", "admin")
    info, result = st.queue.result(task_id, who)
    if result is None:
        detail = f" ({info.last_error.type}: {info.last_error.message})" if info.last_error else ""
        raise ApiError(
            409 if not info.state.terminal else 404,
            "no_result",
            f"task {task_id} has no result: it is {info.state.value}{detail}",
        )
    return TaskResultEnvelope(
        task_id=task_id, state=info.state, result=TaskResult.model_validate(result)
    )


@router.delete("/tasks/{task_id}", response_model=TaskInfo)
async def cancel_task(
    task_id: str, who: Caller = Depends(caller), st: ServerState = Depends(state)
) -> TaskInfo:
    """Cancel a queued or running task; a running one is stopped at its next heartbeat."""
    require(who, "user", "admin")
    info = st.queue.cancel(task_id, who)
    await st.acknowledge(time.monotonic())
    return info


@router.post(
    "/tasks/{task_id}/retry",
    response_model=TaskInfo,
    responses={409: {"description": "the task is not failed or dead"}},
)
async def retry_task(
    task_id: str, who: Caller = Depends(caller), st: ServerState = Depends(state)
) -> TaskInfo:
    """Put a failed or dead task back in the queue, its attempts counted from zero again
    (the earlier ones stay in its attempts history)."""
    require(who, "user", "admin")
    try:
        info = st.queue.retry(task_id, who)
    except NotRetryable as exc:
        raise ApiError(409, "not_retryable", str(exc)) from None
    await st.notifier.notify(info.task_type, info.user_id)
    return info


@router.get("/tasks/{task_id}/attempts", response_model=TaskAttemptList)
async def task_attempts(
    task_id: str, who: Caller = Depends(caller), st: ServerState = Depends(state)
) -> TaskAttemptList:
    """Every lease of the task, oldest first: its worker, times, outcome, error, timings."""
    require(who, "user", "admin")
    return TaskAttemptList(attempts=st.queue.attempts_of(task_id, who))


@router.get("/files/{file_id}")
async def get_file(
    file_id: str, request: Request, who: Caller = Depends(caller), st: ServerState = Depends(state)
) -> Response:
    """Stream an input file (``Range`` supported; ``ETag`` is its sha256).

    A worker key may fetch a file only while it holds a lease on a task that uses it;
    a user key only files of its own tasks.
    """
    path = st.files.path(file_id) if st.queue.may_read_file(file_id, who) else None
    if path is None:
        raise ApiError(404, "not_found", f"file {file_id} not found or not leased by this key")
    etag = f'"{file_id}"'
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag})
    return _BigChunkFileResponse(
        path, media_type="application/octet-stream", headers={"ETag": etag}
    )


class _BigChunkFileResponse(FileResponse):
    """Reads the file in 1 MiB pieces instead of Starlette's 64 KiB: each read is a hop
    to a worker thread, and at 64 KiB those hops, not the bytes, bounded a download
    (bench/transfer.py). Memory stays flat: one piece in flight per download."""

    chunk_size = 1 << 20
