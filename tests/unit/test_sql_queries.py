"""The named queries: the same names in both dialects, each with a description.

As procrastinate does, every query says in one comment line what it is for, so the SQL
files read as the list of everything the server asks of its database.
"""

from __future__ import annotations

import re
from importlib import resources

import pytest

from morag_worker.server.db import load_queries

#: Queries only one dialect needs (PostgreSQL's advisory lock around migrations).
DIALECT_ONLY = {"migration_lock", "migration_unlock"}


def _text(dialect: str) -> str:
    return resources.files("morag_worker.server").joinpath(f"sql/{dialect}.sql").read_text()


def test_both_dialects_name_the_same_queries() -> None:
    sqlite, postgres = set(load_queries("sqlite")), set(load_queries("postgres"))
    assert sqlite - DIALECT_ONLY == postgres - DIALECT_ONLY


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_every_query_says_what_it_is_for(dialect: str) -> None:
    bare = re.findall(r"^-- name: (\w+)\n(?!-- \S)", _text(dialect), re.M)
    assert bare == [], f"{dialect}.sql: add a '-- what it is for' line under {bare}"
