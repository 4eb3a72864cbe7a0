"""The one error type of the API: raised anywhere below a route, answered as JSON.

Every refusal (validation, size, role, a malformed upload) is an :class:`ApiError`
carrying the HTTP status and the body's ``code``, ``message`` and ``field``;
:mod:`.errors` turns it into ``{"error": {...}}``. It has no imports of its own, so the
file store and the multipart reader can raise it without depending on the web layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


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


def invalid(errors: Sequence[Any]) -> ApiError:
    """The 422 for a pydantic or FastAPI validation failure: its first error, named by
    the field's path (``parameters.url``), or the body as a whole when JSON is broken."""
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    loc = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path")]
    field = ".".join(loc) or None
    message = str(first.get("msg", "invalid request"))
    if first.get("type") == "json_invalid":
        ctx = first.get("ctx")
        detail = ctx.get("error", "") if isinstance(ctx, dict) else message
        message, field = f"request body is not valid JSON: {detail}", None
    where = f"{field}: " if field else ""
    return ApiError(422, "invalid", f"{where}{message}", field)
