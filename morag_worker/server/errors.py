"""JSON error bodies for every failure the API reports.

Every error is ``{"error": {"code", "message", "field"}}``: ``code`` for programs,
``message`` for people (what was wrong and what to do), ``field`` when one request
field is at fault. Validation errors name the first offending field by its path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from morag_worker.protocol import ErrorBody, ErrorDetail
from morag_worker.server.auth import AuthError
from morag_worker.server.files import UploadError
from morag_worker.server.queue import LeaseLost, NotFound


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.details = details


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
    details: dict[str, Any] | None = None,
) -> JSONResponse:
    detail = ErrorDetail(code=code, message=message, field=field, details=details)
    body = ErrorBody(error=detail)
    payload = body.model_dump()
    if details is None:
        payload["error"].pop("details")  # the usual shape: code, message, field
    return JSONResponse(payload, status_code=status, headers=headers)


def field_path(loc: Sequence[object], ctx: object = None) -> str | None:
    """A validation error's location as a request field: ``result.chunks[1].index``.

    List positions are written ``[n]``; a validator that checks several fields at once
    (a chunk list's distinct indexes) names the one at fault in its context's ``subpath``.
    """
    path = ""
    for part in loc:
        if part in ("body", "query", "path"):
            continue
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    subpath = ctx.get("subpath") if isinstance(ctx, dict) else None
    if subpath:
        path += subpath if subpath.startswith("[") else f".{subpath}"
    return path.lstrip(".") or None


def validation_summary(exc: ValidationError) -> str:
    """The first error of a model's validation as ``field: message``."""
    errors = exc.errors()
    if not errors:
        return str(exc)
    first = errors[0]
    field = field_path(first.get("loc", ()), first.get("ctx"))
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{field + ': ' if field else ''}{first.get('msg', 'invalid')}{more}"


def _validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    field = field_path(first.get("loc", ()), first.get("ctx"))
    message = str(first.get("msg", "invalid request"))
    if first.get("type") == "json_invalid":
        ctx = first.get("ctx")
        detail = ctx.get("error", "") if isinstance(ctx, dict) else ""
        message = f"request body is not valid JSON: {detail}"
        field = None
    where = f"{field}: " if field else ""
    return error_response(422, "invalid", f"{where}{message}", field)


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)

    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.field, details=exc.details)

    @app.exception_handler(UploadError)
    async def _upload(_: Request, exc: UploadError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.field)

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
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error")
        return error_response(exc.status_code, code, str(exc.detail))
