"""Request dependencies: the shared state and the authenticated caller."""

from __future__ import annotations

from fastapi import Request

from morag_worker.server.auth import AuthError, Caller
from morag_worker.server.errors import ApiError
from morag_worker.server.state import ServerState

# Both dependencies are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency
# in a thread pool, and those hops cost more than the work (a dict lookup, a hash).


async def state(request: Request) -> ServerState:
    st: ServerState = request.app.state.morag
    return st


async def caller(request: Request) -> Caller:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise AuthError("missing API key: send 'Authorization: Bearer <key>'")
    st: ServerState = request.app.state.morag
    return st.keys.verify(key.strip())


def require(who: Caller, *roles: str) -> None:
    if who.role not in roles:
        raise ApiError(
            403,
            "forbidden",
            f"this call needs a key with role {' or '.join(roles)}; this key has role {who.role}",
        )
