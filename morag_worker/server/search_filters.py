"""Search filters: the user's ``filters`` object → a Qdrant filter scoped to that user.

The user scope is always the first ``must`` condition and cannot be overridden: no
filter key selects ``user_id``. Supported keys (each a string or a non-empty list of
strings, a list matching any of them): ``task_id``, ``source``, ``task_type``.
"""

from __future__ import annotations

from typing import Any

from qdrant_client import models

#: Filter keys a search accepts, each a keyword field of every point's payload.
FILTER_KEYS: tuple[str, ...] = ("task_id", "source", "task_type")
#: Values one list filter may hold: bounds the size of the query sent to Qdrant.
MAX_FILTER_VALUES = 1000


def _match(key: str, value: object) -> models.FieldCondition:
    if isinstance(value, str):
        return models.FieldCondition(key=key, match=models.MatchValue(value=value))
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        if len(value) > MAX_FILTER_VALUES:
            raise ValueError(f"filter {key!r}: at most {MAX_FILTER_VALUES} values")
        return models.FieldCondition(key=key, match=models.MatchAny(any=list(value)))
    raise ValueError(f"filter {key!r}: expected a string or a non-empty list of strings")


def build_filter(user_id: str, filters: dict[str, Any]) -> models.Filter:
    """A filter matching ``user_id``'s points that satisfy every entry of ``filters``.

    Raises ValueError naming an unknown key (and listing the known ones) or a bad value.
    """
    if not user_id:
        raise ValueError("a search needs the caller's user_id")
    unknown = sorted(set(filters) - set(FILTER_KEYS))
    if unknown:
        raise ValueError(
            f"unknown search filter {', '.join(map(repr, unknown))}; "
            f"supported: {', '.join(FILTER_KEYS)}"
        )
    must: list[models.Condition] = [
        models.FieldCondition(key="user_id", match=models.MatchValue(value=user_id))
    ]
    must.extend(_match(key, filters[key]) for key in FILTER_KEYS if key in filters)
    return models.Filter(must=must)


def user_and_task(user_id: str, task_id: str) -> models.Filter:
    """The points of one task of one user; ValueError for an empty id."""
    if not task_id:
        raise ValueError("a task_id is needed")
    return build_filter(user_id, {"task_id": task_id})
