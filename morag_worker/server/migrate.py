"""Versioned schema migrations: numbered SQL files per dialect, recorded in the database.

``migrations/<dialect>/NNNN_name.sql`` holds one migration each; both dialects have the
same numbers and names. Each is applied in one transaction together with its row in
``schema_migrations``, so a crash leaves the schema at the previous version, never
between two. Migration 0001 is the schema release 0.1.0 created (``CREATE TABLE IF NOT
EXISTS``), so applying it to a database of that release adopts it unchanged.

Several replicas may start at once on PostgreSQL: each takes an advisory lock before it
looks at the version table, so one applies and the others wait, then find nothing to do.
SQLite serialises writers itself; the version is re-read inside the write transaction.

A database newer than this code (a later release migrated it) is refused, naming both
versions: old code must not write rows a newer schema gives a different meaning to.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from morag_worker import __version__
from morag_worker.server.db import Database

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


class SchemaError(Exception):
    """The database's schema cannot be used by this server as it is (exit code 2)."""


@dataclass(frozen=True)
class SchemaStatus:
    #: Highest version recorded; 0 when none is (an empty database or one of 0.1.0).
    current: int
    #: Highest version this code knows.
    target: int
    pending: list[Migration] = field(default_factory=list)
    applied: list[dict[str, Any]] = field(default_factory=list)
    #: The unversioned database already holds tables (written by release 0.1.0).
    adopting: bool = False

    @property
    def too_new(self) -> bool:
        return self.current > self.target

    def describe(self) -> str:
        if self.too_new:
            newest = self.applied[-1] if self.applied else {}
            return (
                f"the database schema is at version {self.current} (migrated by morag-server "
                f"{newest.get('server_version', '?')}), but this morag-server {__version__} "
                f"knows versions up to {self.target}: run the newer morag-server, or restore "
                "the backup taken before the upgrade (docs/operations.md, Upgrades)"
            )
        if self.pending:
            names = ", ".join(m.label for m in self.pending)
            start = "unversioned (release 0.1.0)" if self.adopting else f"at {self.current}"
            return f"schema {start}, {len(self.pending)} pending: {names}"
        return f"schema at version {self.current}, up to date"


def load_migrations(dialect: str) -> list[Migration]:
    """The dialect's migrations in order; numbering must run 1, 2, 3… without gaps."""
    folder = resources.files("morag_worker.server").joinpath(f"migrations/{dialect}")
    found = []
    for entry in folder.iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text()))
    found.sort(key=lambda m: m.version)
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise RuntimeError(
                f"{dialect} migrations skip from {expected - 1} to {migration.label}"
            )
    return found


class Migrator:
    """Reads and advances one database's schema version."""

    def __init__(self, db: Database, migrations: list[Migration] | None = None) -> None:
        self.db = db
        self.migrations = migrations if migrations is not None else load_migrations(db.dialect)

    @property
    def target(self) -> int:
        return self.migrations[-1].version if self.migrations else 0

    def status(self) -> SchemaStatus:
        if not self.db.one("schema_table_exists"):
            adopting = bool(self.db.one("release_tables_exist"))
            return SchemaStatus(0, self.target, list(self.migrations), [], adopting)
        applied = self.db.query("schema_versions")
        current = max((row["version"] for row in applied), default=0)
        pending = [m for m in self.migrations if m.version > current]
        return SchemaStatus(current, self.target, pending, applied)

    def require_current(self) -> SchemaStatus:
        """Refuse a schema that is behind or ahead of this code (auto-migration off)."""
        status = self.status()
        if status.too_new:
            raise SchemaError(status.describe())
        if status.pending:
            raise SchemaError(
                f"{status.describe()}; run `morag-server migrate` first "
                "(or start without --no-auto-migrate)"
            )
        return status

    def migrate(self, progress: Callable[[str], None] = lambda _: None) -> list[Migration]:
        """Apply every pending migration, each in its own transaction; returns them."""
        applied: list[Migration] = []
        with self.db.migration_lock():
            self.db.execute("create_schema_table")
            status = self.status()
            if status.too_new:
                raise SchemaError(status.describe())
            for migration in status.pending:
                if self._apply(migration):
                    progress(f"applied migration {migration.label}")
                    applied.append(migration)
        return applied

    def _apply(self, migration: Migration) -> bool:
        with self.db.transaction():
            # Re-read inside the write transaction: another process may have applied it.
            if self.db.one("schema_version_applied", version=migration.version):
                return False
            self.db.run_script(migration.sql)
            self.db.execute(
                "record_migration",
                version=migration.version,
                name=migration.name,
                applied_at=time.time(),
                server_version=__version__,
            )
        return True
