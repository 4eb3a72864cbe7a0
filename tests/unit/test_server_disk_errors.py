"""Recognising a full disk in the errors each storage layer raises (real exception types:
a full PostgreSQL cannot be arranged here, its error class can), and parameter depth."""

from __future__ import annotations

import errno
import sqlite3

import psycopg

from morag_worker.server.disk import is_disk_full
from morag_worker.server.limits import json_depth


def test_full_disk_errors_are_recognised_through_their_causes() -> None:
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert is_disk_full(sqlite3.OperationalError("database or disk is full"))
    assert is_disk_full(psycopg.errors.DiskFull("could not extend file"))
    try:
        try:
            raise sqlite3.OperationalError("database or disk is full")
        except sqlite3.Error:
            raise sqlite3.OperationalError("cannot rollback - no transaction is active")  # noqa: B904
    except sqlite3.Error as wrapped:
        assert is_disk_full(wrapped)  # the ROLLBACK after a full disk still counts
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not is_disk_full(sqlite3.OperationalError("database is locked"))
    assert not is_disk_full(psycopg.errors.UniqueViolation("duplicate key"))
    assert not is_disk_full(ValueError("no"))


def test_json_depth_counts_objects_and_arrays() -> None:
    assert json_depth(1) == 0 and json_depth({}) == 1 and json_depth([]) == 1
    assert json_depth({"a": [1, {"b": {}}]}) == 4
    deep: object = 1
    for _ in range(10_000):  # far deeper than recursion would allow
        deep = [deep]
    assert json_depth(deep) == 10_000
