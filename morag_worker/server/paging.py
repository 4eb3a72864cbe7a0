"""Opaque cursors for keyset paging of task lists.

A cursor is the (created_at, task_id) of the last task on a page, as URL-safe base64 of
JSON: clients pass it back unchanged and never need to read it. A float's JSON form
round-trips exactly, so the next page starts right after that task.
"""

from __future__ import annotations

import base64
import binascii
import json


class BadCursor(ValueError):
    """The cursor was not made by :func:`encode_cursor`."""


def encode_cursor(created_at: float, task_id: str) -> str:
    raw = json.dumps([created_at, task_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """(created_at, task_id) from a cursor; BadCursor when it is not one."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, task_id = json.loads(raw)
    except (binascii.Error, ValueError, TypeError):
        raise BadCursor("not a cursor this server issued; pass next_cursor unchanged") from None
    if not isinstance(created_at, int | float) or isinstance(created_at, bool):
        raise BadCursor("not a cursor this server issued; pass next_cursor unchanged")
    if not isinstance(task_id, str):
        raise BadCursor("not a cursor this server issued; pass next_cursor unchanged")
    return float(created_at), task_id
