"""Admin endpoints for the search index: state, failed rows, retry, rebuild, export, import.

The indexer marks a result it could not index after several attempts as failed
(``index_state`` on the task). These routes let an operator list those rows, queue them
again once the cause is fixed, or queue every completed result again (a rebuild, after
moving to another vector store or losing one). Export and import move the points
themselves (ids, vectors, payloads) as JSON lines, between the embedded store and a
Qdrant server in either direction, without embedding anything again.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from morag_worker.protocol import (
    IndexFailure,
    IndexFailureList,
    IndexRetryRequest,
    IndexRetryResponse,
    IndexStatus,
)
from morag_worker.server.apierror import ApiError
from morag_worker.server.deps import caller, require, state
from morag_worker.server.embedded_store import StoredPoint
from morag_worker.server.queue import Caller
from morag_worker.server.state import ServerState

router = APIRouter(prefix="/api/v1/index", tags=["index"])

#: Failed rows one listing returns by default; the most an operator reads at once.
FAILURES_DEFAULT_LIMIT = 100
FAILURES_MAX_LIMIT = 10000
#: Points upserted per round of an import: the store's own batch size.
IMPORT_BATCH = 256
#: Longest line an import accepts: a 4096-dim vector as text with a large chunk of text.
MAX_IMPORT_LINE_BYTES = 4 << 20


def _storage(st: ServerState) -> Any:
    if st.storage is None:
        raise ApiError(
            503,
            "search_unavailable",
            f"no vector store on this server: {st.storage_error or 'indexing is turned off'}",
        )
    return st.storage


@router.get("", response_model=IndexStatus)
async def index_status(
    who: Caller = Depends(caller), st: ServerState = Depends(state)
) -> IndexStatus:
    """How many results wait for indexing or were given up on, and where chunks go."""
    require(who, "admin")
    counts = st.index_rows.counts()
    backend = st.storage.describe() if st.storage is not None else "none"
    return IndexStatus(
        pending=counts["pending"],
        failed=counts["failed"],
        backend=backend,
        error=st.storage_error or None,
    )


@router.get("/failures", response_model=IndexFailureList)
async def index_failures(
    limit: int = FAILURES_DEFAULT_LIMIT,
    who: Caller = Depends(caller),
    st: ServerState = Depends(state),
) -> IndexFailureList:
    """Results the indexer gave up on, oldest first, with their last error."""
    require(who, "admin")
    rows = st.index_rows.failures(max(1, min(limit, FAILURES_MAX_LIMIT)))
    return IndexFailureList(failures=[IndexFailure.model_validate(row) for row in rows])


@router.post("/retry", response_model=IndexRetryResponse)
async def retry_index(
    body: IndexRetryRequest, who: Caller = Depends(caller), st: ServerState = Depends(state)
) -> IndexRetryResponse:
    """Queue failed (or still pending) results for indexing again, with fresh attempts."""
    require(who, "admin")
    retried, not_failed = st.index_rows.retry(body.task_ids, body.all_failed)
    return IndexRetryResponse(retried=retried, not_failed=not_failed)


@router.post("/rebuild", response_model=IndexStatus)
async def rebuild_index(
    who: Caller = Depends(caller), st: ServerState = Depends(state)
) -> IndexStatus:
    """Queue every completed result for indexing again (idempotent: point ids are fixed).

    The running indexer does the work; ``pending`` in the reply and in
    ``GET /api/v1/index`` counts down as it goes.
    """
    require(who, "admin")
    st.index_rows.reindex_all()
    return await index_status(who, st)


def _export_lines(storage: Any) -> Iterator[bytes]:
    for point in storage.export_points():
        line = {"id": point.point_id, "vector": point.vector, "payload": point.payload}
        yield (json.dumps(line, separators=(",", ":")) + "\n").encode()


@router.get("/export")
def export_index(
    who: Caller = Depends(caller), st: ServerState = Depends(state)
) -> StreamingResponse:
    """Every point as one JSON line ``{"id", "vector", "payload"}`` (streamed)."""
    require(who, "admin")
    lines = _export_lines(_storage(st))
    return StreamingResponse(lines, media_type="application/x-ndjson")


async def _lines(request: Request) -> AsyncIterator[tuple[int, bytes]]:
    number, pending = 0, b""
    async for piece in request.stream():
        pending += piece
        *complete, pending = pending.split(b"\n")
        for line in complete:
            number += 1
            yield number, line
        if len(pending) > MAX_IMPORT_LINE_BYTES:
            raise ApiError(
                413, "too_large", f"line {number + 1}: longer than {MAX_IMPORT_LINE_BYTES} bytes"
            )
    if pending:
        yield number + 1, pending


def _point(number: int, line: bytes) -> StoredPoint:
    try:
        data = json.loads(line)
        return StoredPoint(
            str(data["id"]), [float(x) for x in data["vector"]], dict(data["payload"])
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ApiError(
            422, "invalid", f"line {number}: not a point {{id, vector, payload}} ({exc})", "body"
        ) from None


@router.post("/import")
async def import_index(
    request: Request, who: Caller = Depends(caller), st: ServerState = Depends(state)
) -> dict[str, int]:
    """Upsert points from JSON lines as ``export`` writes them; returns how many.

    Points are written in batches as they arrive: on an error (422 naming the line),
    those before it are stored, and importing the whole file again is harmless.
    """
    require(who, "admin")
    storage = _storage(st)
    batch: list[StoredPoint] = []
    imported = 0
    async for number, line in _lines(request):
        if line.strip():
            batch.append(_point(number, line))
        if len(batch) >= IMPORT_BATCH:
            imported += await _import(storage, batch, number)
            batch = []
    if batch:
        imported += await _import(storage, batch, None)
    return {"imported": imported}


async def _import(storage: Any, batch: list[StoredPoint], number: int | None) -> int:
    try:
        await run_in_threadpool(storage.import_points, batch)
    except ValueError as exc:
        where = f"lines up to {number}" if number else "the last lines"
        raise ApiError(422, "invalid", f"{where}: {exc}", "body") from None
    return len(batch)
