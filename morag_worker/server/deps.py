"""Request dependencies: the shared state and the authenticated caller."""

from __future__ import annotations

from fastapi import Request

from morag_worker.server.auth import AuthError, Caller
from morag_worker.server.errors import ApiError
from morag_worker.server.sessions import SAFE_METHODS, SESSION_COOKIE, same_origin
from morag_worker.server.state import ServerState

# Both dependencies are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency
# in a thread pool, and those hops cost more than the work (a dict lookup, a hash).


async def state(request: Request) -> ServerState:
    st: ServerState = request.app.state.morag
    return st


async def caller(request: Request) -> Caller:
    """The key in ``Authorization: Bearer``, else the dashboard's session cookie.

    A call that changes something on the strength of the cookie alone must come from
    the dashboard's own origin (sessions.py says why SameSite is not enough)."""
    header = request.headers.get("authorization", "")
    st: ServerState = request.app.state.morag
    token = request.cookies.get(SESSION_COOKIE)
    if not header and token:
        who = st.sessions.verify(token)
        if request.method not in SAFE_METHODS and not same_origin(request):
            raise ApiError(
                403,
                "cross_origin",
                "a dashboard session may change things only from the dashboard's own pages, "
                "and this request does not say it comes from one (it needs "
                "'Sec-Fetch-Site: same-origin' or an Origin naming this server); programs "
                "send 'Authorization: Bearer <key>' instead",
            )
        return who
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise AuthError("missing API key: send 'Authorization: Bearer <key>'")
    return st.keys.verify(key.strip())


def require(who: Caller, *roles: str) -> None:
    if who.role not in roles:
        raise ApiError(
            403,
            "forbidden",
            f"this call needs a key with role {' or '.join(roles)}; this key has role {who.role}",
        )
