"""Search over the caller's own indexed chunks."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from morag_worker.protocol import SearchRequest, SearchResponse
from morag_worker.server.apierror import ApiError
from morag_worker.server.auth import Caller
from morag_worker.server.deps import caller, require, state
from morag_worker.server.limits import error_responses
from morag_worker.server.state import ServerState

router = APIRouter(tags=["search"])

# A plain ``def``: embedding the query takes milliseconds of CPU, which belong on the
# thread pool rather than on the event loop that serves leases.


@router.post(
    "/api/v1/search", response_model=SearchResponse, responses=error_responses(401, 403, 408, 413)
)
def search(
    body: SearchRequest, who: Caller = Depends(caller), st: ServerState = Depends(state)
) -> SearchResponse:
    """Semantic search over the caller's own chunks (never another user's)."""
    require(who, "user", "admin")
    if st.storage is None:
        raise ApiError(
            503,
            "search_unavailable",
            "search is not available on this server: "
            f"{st.storage_error or 'indexing is turned off'}",
        )
    try:
        hits = st.storage.search(who.user_id, body.query, body.limit, body.filters)
    except ValueError as exc:
        raise ApiError(422, "invalid", f"filters: {exc}", "filters") from None
    return SearchResponse(hits=hits)
