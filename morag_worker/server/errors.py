"""JSON error bodies for every failure the API reports.

Every error is ``{"error": {"code", "message", "field"}}``: ``code`` for programs,
``message`` for people (what was wrong and what to do), ``field`` when one request
field is at fault. Validation errors name the first offending field by its path.
A write refused for lack of disk space is 507 (see :mod:`.disk`); any other unexpected
error is a JSON 500, logged with its traceback.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from loguru import logger
from starlette.exceptions import HTTPException as StarletteHTTPException

from morag_worker.protocol import ErrorBody, ErrorDetail
from morag_worker.server.apierror import ApiError, invalid
from morag_worker.server.auth import AuthError
from morag_worker.server.disk import is_disk_full
from morag_worker.server.limits import LongPollRefused
from morag_worker.server.queue import LeaseLost, NotFound


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
    details: dict[str, Any] | None = None,
) -> JSONResponse:
    detail = ErrorDetail(code=code, message=message, field=field, details=details)
    body = ErrorBody(error=detail)
    payload = body.model_dump()
    if details is None:
        payload["error"].pop("details")  # the usual shape: code, message, field
    return JSONResponse(payload, status_code=status, headers=headers)


def _validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    error = invalid(exc.errors())
    return error_response(error.status, error.code, error.message, error.field)


def _database_unreachable(exc: Exception) -> bool:
    """PostgreSQL's connection failed or was dropped (a restart, a failover): the server
    reconnects at the next statement (``db.py``), so the request may simply be retried."""
    if not type(exc).__module__.startswith("psycopg"):
        return False
    import psycopg

    return isinstance(exc, psycopg.OperationalError)


async def _storage_error(request: Request, exc: Exception) -> JSONResponse:
    """OSError and database errors: 507 when the disk is full, 503 while PostgreSQL
    cannot be reached, else a real failure."""
    if _database_unreachable(exc) and not is_disk_full(exc):
        logger.warning("database unreachable: {}", " ".join(str(exc).split())[:300])
        return error_response(
            503,
            "database_unavailable",
            "the server lost its connection to the database (PostgreSQL restarting?); "
            "retry shortly: the server reconnects by itself",
            headers={"Retry-After": "1"},
        )
    if not is_disk_full(exc):
        raise exc  # a 500 with its traceback, from the generic handler
    route = request.scope.get("route")
    request.app.state.morag.disk.note_full(
        f"{request.method} {getattr(route, 'path', request.url.path)}"
    )
    return error_response(
        507,
        "insufficient_storage",
        "the server is out of disk space; nothing of this request was kept. Retry later "
        "(the server recovers by itself once space is freed; /health says degraded until then)",
    )


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    # Starlette logs the traceback after this answer; the client learns only that it
    # was not its fault.
    return error_response(500, "internal", "an unexpected server error; it has been logged")


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(OSError, _storage_error)
    app.add_exception_handler(sqlite3.Error, _storage_error)
    try:
        import psycopg
    except ImportError:  # PostgreSQL support is optional
        pass
    else:
        app.add_exception_handler(psycopg.Error, _storage_error)
    app.add_exception_handler(Exception, _unexpected)

    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.field, details=exc.details)

    @app.exception_handler(LongPollRefused)
    async def _too_many(_: Request, exc: LongPollRefused) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after_s)}
        return error_response(429, "too_many_long_polls", str(exc), headers=headers)

    @app.exception_handler(AuthError)
    async def _auth(_: Request, exc: AuthError) -> JSONResponse:
        return error_response(401, "unauthorized", str(exc), headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(LeaseLost)
    async def _lost(_: Request, exc: LeaseLost) -> JSONResponse:
        return error_response(409, "lease_lost", str(exc))

    @app.exception_handler(NotFound)
    async def _missing(_: Request, exc: NotFound) -> JSONResponse:
        return error_response(404, "not_found", str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = getattr(exc, "code", None) or {404: "not_found", 405: "method_not_allowed"}.get(
            exc.status_code, "error"
        )
        return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)
