"""The one error type of the API: raised anywhere below a route, answered as JSON.

Every refusal (validation, size, role, a malformed upload) is an :class:`ApiError`
carrying the HTTP status and the body's ``code``, ``message`` and ``field``;
:mod:`.errors` turns it into ``{"error": {...}}``. It has no imports of its own, so the
file store and the multipart reader can raise it without depending on the web layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: this module imports nothing at run time
    from pydantic import ValidationError


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


def invalid(errors: Sequence[Any]) -> ApiError:
    """The 422 for a pydantic or FastAPI validation failure: its first error, named by
    the field's path (``parameters.url``, ``result.chunks[1].index``), or the body as a
    whole when JSON is broken."""
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    field = field_path(first.get("loc", ()), first.get("ctx"))
    message = str(first.get("msg", "invalid request"))
    if first.get("type") == "json_invalid":
        ctx = first.get("ctx")
        detail = ctx.get("error", "") if isinstance(ctx, dict) else message
        message, field = f"request body is not valid JSON: {detail}", None
    where = f"{field}: " if field else ""
    return ApiError(422, "invalid", f"{where}{message}", field)


def validation_summary(exc: ValidationError) -> str:
    """A model's validation failure in one line: its first error as ``field: message``."""
    errors = exc.errors()
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return invalid(errors).message + more
