"""Admin endpoints (keys, workers), health and metrics."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from morag_worker.protocol import (
    KeyCreated,
    KeyCreateRequest,
    KeyInfo,
    KeyList,
    Role,
    WorkerList,
)
from morag_worker.server.auth import Caller, LastAdminKey
from morag_worker.server.deps import caller, require, state
from morag_worker.server.errors import ApiError
from morag_worker.server.limits import error_responses
from morag_worker.server.metrics import REGISTRY
from morag_worker.server.state import ServerState

router = APIRouter(tags=["admin"])

# Handlers are ``async def``: their database calls take well under a millisecond, less
# than a hop to FastAPI's thread pool. Search embeds a query and stays a plain ``def``.


@router.get("/health")
async def health(st: ServerState = Depends(state)) -> dict[str, object]:
    """200 while the server serves. ``status`` is ``degraded`` (with ``problems`` in words)
    when it serves with a fault a restart cannot fix, such as a full disk."""
    return st.health_report()


@router.get("/metrics")
def metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


@router.post(
    "/api/v1/keys",
    status_code=201,
    response_model=KeyCreated,
    responses=error_responses(401, 403, 408, 413),
)
async def create_key(
    body: KeyCreateRequest, who: Caller = Depends(caller), st: ServerState = Depends(state)
) -> KeyCreated:
    """Create a key. Admins create any; a user may create worker keys for itself."""
    if who.role != "admin":
        require(who, "user")
        if body.role != Role.worker or body.user_id != who.user_id or body.pool:
            raise ApiError(
                403,
                "forbidden",
                "a user key may only create (non-pool) worker keys for its own user",
            )
    try:
        created = st.keys.create(
            body.user_id, body.role, pool=body.pool, expires_days=body.expires_days, name=body.name
        )
    except ValueError as exc:
        raise ApiError(422, "invalid", str(exc), "pool") from None
    await st.acknowledge(time.monotonic())  # the secret is shown once: the key must last
    return created


@router.get("/api/v1/keys", response_model=KeyList)
async def list_keys(who: Caller = Depends(caller), st: ServerState = Depends(state)) -> KeyList:
    require(who, "admin")
    return KeyList(keys=st.keys.list_keys())


@router.delete("/api/v1/keys/{key_id}", response_model=KeyInfo)
async def revoke_key(
    key_id: str, who: Caller = Depends(caller), st: ServerState = Depends(state)
) -> KeyInfo:
    require(who, "admin")
    try:
        revoked = st.keys.revoke(key_id)
    except KeyError:
        raise ApiError(404, "not_found", f"key {key_id} not found") from None
    except LastAdminKey as exc:
        raise ApiError(409, "last_admin_key", str(exc)) from None
    await st.acknowledge(time.monotonic())
    return revoked


@router.get("/api/v1/workers", response_model=WorkerList)
async def list_workers(
    who: Caller = Depends(caller), st: ServerState = Depends(state)
) -> WorkerList:
    """Registered workers: an admin sees all, a user those that may run its tasks (its
    own worker keys' and pool workers)."""
    require(who, "admin", "user")
    return WorkerList(workers=st.workers.visible(who))
