"""The queue contract runs against SQLite and a real PostgreSQL.

PostgreSQL comes from ``MORAG_TEST_POSTGRES_URL`` (default: the local server on
127.0.0.1:5432, database ``test``). Each test gets its own schema, dropped afterwards.
If no PostgreSQL answers, the PostgreSQL cases are skipped with the reason; CI starts
the server before the tests, so there they always run.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from morag_worker.server.db import Database

PG_URL = os.environ.get("MORAG_TEST_POSTGRES_URL", "postgresql://127.0.0.1:5432/test")


def _pg_admin():  # type: ignore[no-untyped-def]
    import psycopg

    return psycopg.connect(PG_URL, autocommit=True, connect_timeout=3)


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'queue.db'}"
        return
    try:
        admin = _pg_admin()
    except Exception as exc:  # no server: say so, the SQLite half still runs
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}: {exc}")
    schema = "t_" + secrets.token_hex(6)
    admin.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    database.create_schema()
    yield database
    database.close()
