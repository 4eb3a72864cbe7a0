"""The dashboard: its page and static files under ``/ui``, and its calls under ``/ui/api``.

The page is one HTML file with plain ES modules and CSS shipped in the package (no build
step, nothing from a CDN). It reads the same ``/api/v1`` routes as every client, with the
same role checks, authenticated by the session cookie that ``POST /ui/api/session``
issues for an API key (see :mod:`.sessions`); ``/ui/api`` adds what only the pages need:
the overview and paged, sanitised views of one result.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request, Response

from morag_worker.protocol import Role
from morag_worker.server.auth import Caller
from morag_worker.server.deps import caller, require, state
from morag_worker.server.errors import ApiError
from morag_worker.server.limits import error_responses
from morag_worker.server.overview import overview, result_items, stored_result
from morag_worker.server.render import render_part
from morag_worker.server.sessions import SESSION_COOKIE, SESSION_TTL_S
from morag_worker.server.state import ServerState
from morag_worker.server.ui_models import (
    ContentPart,
    Overview,
    ResultItems,
    SessionInfo,
    SignedOut,
)

router = APIRouter(tags=["dashboard"], responses=error_responses(401, 403))

#: The page's rules for the browser: scripts, styles and everything fetched come from
#: this server only, no inline script runs (a result's Markdown is hostile input), the
#: page cannot be framed, and nothing leaks a referrer.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # Revalidated on every load (cheap: an ETag), so an upgrade's files apply at once.
    "Cache-Control": "no-cache",
}
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
#: Result items per page: a screenful or two of transcript, a few KB of JSON.
MAX_ITEMS_PAGE = 500


def _static() -> dict[str, tuple[bytes, str, str]]:
    """Every file the dashboard ships, by name: its bytes, media type and ETag."""
    folder = resources.files("morag_worker.server").joinpath("ui")
    found = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if entry.is_file() and suffix in _TYPES:
            body = entry.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
            found[entry.name] = (body, f"{_TYPES[suffix]}; charset=utf-8", etag)
    return found


_FILES = _static()


def _serve(name: str, request: Request) -> Response:
    body, media_type, etag = _FILES[name]
    headers = {**SECURITY_HEADERS, "ETag": etag}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)


@router.get("/ui", include_in_schema=False)
async def page(request: Request) -> Response:
    """The dashboard (public: it holds no data; its calls need a session)."""
    return _serve("index.html", request)


@router.get("/ui/static/{name}", include_in_schema=False)
async def static(name: str, request: Request) -> Response:
    if name not in _FILES or name == "index.html":
        raise ApiError(404, "not_found", f"no dashboard file {name!r}")
    return _serve(name, request)


def _session_info(who: Caller, expires_at: float | None) -> SessionInfo:
    return SessionInfo(
        user_id=who.user_id, role=Role(who.role), key_id=who.key_id, expires_at=expires_at
    )


@router.post("/ui/api/session", response_model=SessionInfo)
async def sign_in(
    request: Request,
    response: Response,
    who: Caller = Depends(caller),
    st: ServerState = Depends(state),
) -> SessionInfo:
    """Sign in to the dashboard with the key in ``Authorization: Bearer``: answers with a
    session cookie (HttpOnly, SameSite=Strict) in place of the key. User and admin keys."""
    if who.role == "worker":
        raise ApiError(
            403,
            "forbidden",
            "a worker key cannot sign in to the dashboard: sign in with a user or admin key",
        )
    token, expires_at = st.sessions.create(who)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(SESSION_TTL_S),
        path="/",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return _session_info(who, expires_at)


@router.get("/ui/api/session", response_model=SessionInfo)
async def session(who: Caller = Depends(caller)) -> SessionInfo:
    """Who the dashboard is signed in as (401 when it is not)."""
    require(who, "user", "admin")
    return _session_info(who, None)


@router.delete("/ui/api/session", response_model=SignedOut)
async def sign_out(
    request: Request,
    response: Response,
    who: Caller = Depends(caller),
    st: ServerState = Depends(state),
) -> SignedOut:
    """End the dashboard session the cookie names (its row is deleted)."""
    require(who, "user", "admin")
    token = request.cookies.get(SESSION_COOKIE)
    if token and not request.headers.get("authorization"):
        st.sessions.delete(token)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return SignedOut(signed_out=True)
    return SignedOut(signed_out=False)


@router.get("/ui/api/overview", response_model=Overview)
async def get_overview(who: Caller = Depends(caller), st: ServerState = Depends(state)) -> Overview:
    """Queue depth by type and state, tasks ended per minute over the last hour, the
    oldest queued task and the workers (a user: its own tasks and its workers)."""
    require(who, "user", "admin")
    return overview(st.db, st.workers, who)


def _result(st: ServerState, task_id: str, who: Caller) -> dict[str, object]:
    try:
        return stored_result(st.db, task_id, who)
    except LookupError as exc:
        raise ApiError(409, "no_result", str(exc)) from None


@router.get("/ui/api/tasks/{task_id}/content", response_model=ContentPart)
def content(
    task_id: str,
    part: int = Query(default=0, ge=0, le=1_000_000, description="which part, from 0"),
    who: Caller = Depends(caller),
    st: ServerState = Depends(state),
) -> ContentPart:
    """One part of the result's Markdown as sanitised HTML (render.py), and how many
    parts there are. A plain ``def``: rendering a part takes milliseconds."""
    require(who, "user", "admin")
    result = _result(st, task_id, who)
    try:
        html, parts = render_part(str(result.get("content") or ""), part)
    except IndexError:
        raise ApiError(404, "not_found", f"part {part}: the result has fewer parts") from None
    metadata = result.get("metadata") if part == 0 else None
    return ContentPart(
        task_id=task_id,
        part=part,
        parts=parts,
        html=html,
        metadata=metadata if isinstance(metadata, dict) else None,
    )


@router.get("/ui/api/tasks/{task_id}/items", response_model=ResultItems)
def items(
    task_id: str,
    kind: Literal["chunks", "segments"] = Query(description="chunks or segments"),
    offset: int = Query(default=0, ge=0, le=10_000_000),
    limit: int = Query(default=200, ge=1, le=MAX_ITEMS_PAGE),
    who: Caller = Depends(caller),
    st: ServerState = Depends(state),
) -> ResultItems:
    """One page of the result's chunks or speech segments (without embeddings and word
    timings)."""
    require(who, "user", "admin")
    total, page = result_items(_result(st, task_id, who), kind, offset, limit)
    return ResultItems(task_id=task_id, kind=kind, offset=offset, total=total, items=page)
