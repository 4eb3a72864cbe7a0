"""Admin endpoints for the search index: its state, failed rows, retry, rebuild.

The indexer marks a result it could not index after several attempts as failed
(``index_state`` on the task). These routes let an operator list those rows, queue them
again once the cause is fixed, or queue every completed result again (a rebuild, after
moving to another vector store or losing one).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from morag_worker.protocol import (
    IndexFailure,
    IndexFailureList,
    IndexRetryRequest,
    IndexRetryResponse,
    IndexStatus,
)
from morag_worker.server.deps import caller, require, state
from morag_worker.server.queue import Caller
from morag_worker.server.state import ServerState

router = APIRouter(prefix="/api/v1/index", tags=["index"])

#: Failed rows one listing returns by default; the most an operator reads at once.
FAILURES_DEFAULT_LIMIT = 100
FAILURES_MAX_LIMIT = 10000


@router.get("", response_model=IndexStatus)
async def index_status(
    who: Caller = Depends(caller), st: ServerState = Depends(state)
) -> IndexStatus:
    """How many results wait for indexing or were given up on, and where chunks go."""
    require(who, "admin")
    counts = st.db.one("index_counts") or {}
    backend = st.storage.describe() if st.storage is not None else "none"
    return IndexStatus(
        pending=counts.get("pending") or 0,
        failed=counts.get("failed") or 0,
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
    rows = st.db.query("index_failures", limit=max(1, min(limit, FAILURES_MAX_LIMIT)))
    return IndexFailureList(failures=[IndexFailure.model_validate(row) for row in rows])


@router.post("/retry", response_model=IndexRetryResponse)
async def retry_index(
    body: IndexRetryRequest, who: Caller = Depends(caller), st: ServerState = Depends(state)
) -> IndexRetryResponse:
    """Queue failed (or still pending) results for indexing again, with fresh attempts."""
    require(who, "admin")
    retried: list[str] = []
    not_failed: list[str] = []
    with st.db.transaction():
        if body.all_failed:
            retried += [row["task_id"] for row in st.db.query("retry_index_failed")]
        for task_id in body.task_ids:
            if task_id in retried:
                continue
            found = st.db.query("retry_index", task_id=task_id)
            (retried if found else not_failed).append(task_id)
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
    st.db.execute("reindex_all")
    return await index_status(who, st)
