"""The queue contract runs against SQLite and a real PostgreSQL.

PostgreSQL comes from ``MORAG_TEST_POSTGRES_URL`` (default: the local server on
127.0.0.1:5432, database ``test``); each test gets its own schema (``harness``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import postgres_schema

from morag_worker.server.db import Database
from morag_worker.server.migrate import Migrator


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'queue.db'}"
        return
    with postgres_schema() as url:
        yield url


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    Migrator(database).migrate()
    yield database
    database.close()
