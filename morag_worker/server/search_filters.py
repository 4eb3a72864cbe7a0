"""Search filters: the user's ``filters`` object, checked and normalised.

Every search is scoped to its caller's ``user_id`` and no filter key can select another
user. Supported keys (each a string or a non-empty list of strings, a list matching any
of them): ``task_id``, ``source``, ``task_type``. Each store turns the normalised form
(key -> list of values) into its own query.
"""

from __future__ import annotations

from typing import Any

#: Filter keys a search accepts, each a keyword field of every point's payload.
FILTER_KEYS: tuple[str, ...] = ("task_id", "source", "task_type")
#: Values one list filter may hold: bounds the size of the query sent to a store.
MAX_FILTER_VALUES = 1000


def _values(key: str, value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        if len(value) > MAX_FILTER_VALUES:
            raise ValueError(f"filter {key!r}: at most {MAX_FILTER_VALUES} values")
        return list(value)
    raise ValueError(f"filter {key!r}: expected a string or a non-empty list of strings")


def normalize(user_id: str, filters: dict[str, Any]) -> dict[str, list[str]]:
    """``filters`` as key -> values, every key known and every value a string.

    Raises ValueError naming an unknown key (and listing the known ones), a bad value,
    or a missing user.
    """
    if not user_id:
        raise ValueError("a search needs the caller's user_id")
    unknown = sorted(set(filters) - set(FILTER_KEYS))
    if unknown:
        raise ValueError(
            f"unknown search filter {', '.join(map(repr, unknown))}; "
            f"supported: {', '.join(FILTER_KEYS)}"
        )
    return {key: _values(key, filters[key]) for key in FILTER_KEYS if key in filters}


def check_scope(user_id: str, task_id: str) -> None:
    """ValueError for an empty user or task id (a write must name both)."""
    if not user_id:
        raise ValueError("a user_id is needed")
    if not task_id:
        raise ValueError("a task_id is needed")
