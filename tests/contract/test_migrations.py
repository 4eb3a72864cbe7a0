"""Schema migrations on SQLite and PostgreSQL: versions recorded, one transaction each."""

from __future__ import annotations

import pytest

from morag_worker.server.db import Database
from morag_worker.server.migrate import Migration, Migrator, SchemaError, load_migrations


def _fresh(db_url: str) -> Database:
    return Database(db_url)


def test_both_dialects_have_the_same_migrations() -> None:
    sqlite = [m.label for m in load_migrations("sqlite")]
    postgres = [m.label for m in load_migrations("postgres")]
    assert sqlite == postgres and sqlite[0] == "0001_initial"


def test_migrate_records_each_version_once(db_url: str) -> None:
    db = _fresh(db_url)
    try:
        migrator = Migrator(db)
        assert migrator.status().current == 0 and not migrator.status().adopting
        applied = migrator.migrate()
        assert [m.version for m in applied] == list(range(1, migrator.target + 1))
        assert migrator.migrate() == []  # nothing left
        status = migrator.status()
        assert status.current == status.target and not status.pending
        assert [row["version"] for row in status.applied] == list(range(1, status.target + 1))
        assert migrator.require_current() == status
    finally:
        db.close()


def test_a_failing_migration_leaves_the_previous_version(db_url: str) -> None:
    db = _fresh(db_url)
    try:
        base = load_migrations(db.dialect)
        broken = Migration(
            len(base) + 1,
            "broken",
            "CREATE TABLE half_done (x INTEGER);\n"
            "ALTER TABLE no_such_table ADD COLUMN y INTEGER;\n",
        )
        migrator = Migrator(db, [*base, broken])
        with pytest.raises(Exception, match="no_such_table"):
            migrator.migrate()
        status = migrator.status()
        assert status.current == len(base) and status.pending == [broken]
        # the first statement of the failed migration was rolled back with it
        assert db.one("schema_table_exists")
        with pytest.raises(Exception, match="half_done"):
            db.run_script("SELECT * FROM half_done;")
    finally:
        db.close()


def test_newer_schema_is_refused(db_url: str) -> None:
    db = _fresh(db_url)
    try:
        base = load_migrations(db.dialect)
        newer = Migrator(db, [*base, Migration(len(base) + 1, "later", "SELECT 1;")])
        newer.migrate()
        with pytest.raises(SchemaError, match=f"knows versions up to {len(base)}"):
            Migrator(db).migrate()
        with pytest.raises(SchemaError, match=f"at version {len(base) + 1}"):
            Migrator(db).require_current()
    finally:
        db.close()


def test_require_current_names_the_command(db_url: str) -> None:
    db = _fresh(db_url)
    try:
        with pytest.raises(SchemaError, match="morag-server migrate"):
            Migrator(db).require_current()
    finally:
        db.close()
