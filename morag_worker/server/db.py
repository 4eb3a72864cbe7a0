"""Database access through named queries, for SQLite (default) and PostgreSQL.

All SQL lives in ``sql/<dialect>.sql`` as ``-- name: NAME`` blocks with the same names in
both files, so the queue logic in :mod:`.queue` is written once. One connection per
server process, guarded by a lock: SQLite serialises writers anyway, and each statement
here is short. PostgreSQL is used in autocommit mode with explicit transactions; when
PostgreSQL drops the connection (a restart, a failover, an administrator), the statement
that met the loss fails (503 on the wire, ``errors.py``) and the next one reconnects.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from loguru import logger

from morag_worker.server.walsync import WalSync

#: SQLite's ``synchronous`` settings this server offers (docs/operations.md, Durability):
#: FULL syncs the WAL at every commit, so an acknowledged write survives a power loss;
#: NORMAL syncs only at checkpoints and can lose the last commits on a power loss.
SQLITE_SYNC_MODES = ("full", "normal")
#: The database and its -wal and -shm files hold every key hash, task and result.
DB_FILE_MODE = 0o600

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)
# ":name" parameters, but not PostgreSQL "::type" casts.
_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


def _only_comments(sql: str) -> bool:
    return all(not line.strip() or line.strip().startswith("--") for line in sql.splitlines())


def safe_url(url: str) -> str:
    """The URL without a password, for messages."""
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


def load_queries(dialect: str) -> dict[str, str]:
    text = resources.files("morag_worker.server").joinpath(f"sql/{dialect}.sql").read_text()
    parts = _NAME.split(text)
    queries = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        queries[name] = body.strip()
    return queries


#: Queries whose best plan depends on their values (the caller's user and task types).
#: psycopg prepares a statement once it has run five times, and PostgreSQL may then
#: switch to a generic plan, made without the values: for the claim that plan read the
#: user's whole queue (every type) instead of its tasks of the types asked for, 25 ms
#: behind 50,000 queued tasks of other types (bench/fleet.py, docs/design.md). These
#: are sent unprepared, so each is planned with its values (a fraction of a ms).
PLAN_WITH_VALUES = frozenset({"claim", "claim_pool", "next_due", "next_due_pool"})


class DatabaseUnavailable(Exception):
    """The database cannot be opened; the message names it and the reason."""


class Database:
    """A connection plus the dialect's named queries.

    ``url`` is a SQLite file path (or ``sqlite:///path``) or a ``postgresql://`` URL;
    ``sqlite_synchronous`` is one of :data:`SQLITE_SYNC_MODES` (ignored for PostgreSQL).
    """

    def __init__(self, url: str, sqlite_synchronous: str = "full") -> None:
        if sqlite_synchronous not in SQLITE_SYNC_MODES:
            raise ValueError(f"sqlite_synchronous: one of {SQLITE_SYNC_MODES}")
        self.sqlite_synchronous = sqlite_synchronous
        self._lock = threading.RLock()
        self._wal: WalSync | None = None
        self._url = url
        try:
            if url.startswith(("postgresql://", "postgres://")):
                self.dialect = "postgres"
                self._conn: Any = self._connect_postgres(url)
            else:
                self.dialect = "sqlite"
                path = url.removeprefix("sqlite:///")
                # FULL durability by group commit: commits themselves do not sync
                # (server/walsync.py); acknowledged writes wait for a WAL sync.
                self._conn = self._connect_sqlite(path, "normal")
                if sqlite_synchronous == "full":
                    self._wal = WalSync(path + "-wal")
        except Exception as exc:
            if isinstance(exc, (sqlite3.Error, OSError)) or type(exc).__module__.startswith(
                "psycopg"
            ):
                reason = " ".join(str(exc).split())
                message = f"cannot open the database {safe_url(url)}: {reason}"
                raise DatabaseUnavailable(message) from None
            raise
        self._queries = load_queries(self.dialect)
        if self.dialect == "postgres":
            self._queries = {k: _PARAM.sub(r"%(\1)s", v) for k, v in self._queries.items()}
        self._in_tx = False

    @staticmethod
    def _connect_sqlite(path: str, synchronous: str) -> sqlite3.Connection:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Created owner-only before SQLite opens it: SQLite gives the -wal and -shm files
        # the database file's mode.
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, DB_FILE_MODE))
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        # WAL lets readers run while a writer commits. FULL makes every commit durable
        # against power loss, at the cost of a WAL sync per commit (bench/dispatch.py).
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
        conn.execute("PRAGMA busy_timeout=10000")
        conn.execute("PRAGMA foreign_keys=ON")
        for suffix in ("", "-wal", "-shm"):  # files an older release left group-readable
            if os.path.exists(path + suffix):
                os.chmod(path + suffix, DB_FILE_MODE)
        return conn

    @staticmethod
    def _connect_postgres(url: str) -> Any:
        import psycopg
        from psycopg.rows import dict_row

        return psycopg.connect(url, autocommit=True, row_factory=dict_row)

    def backend_pid(self) -> int | None:
        """PostgreSQL's process id for this connection (whose NOTIFYs carry it); it
        changes when a lost connection is replaced."""
        if self.dialect != "postgres":
            return None
        return int(self._conn.info.backend_pid)

    def _live(self) -> Any:
        """The connection; a PostgreSQL connection the server dropped is replaced first
        (outside a transaction only: a transaction that met the loss has failed whole).
        Without this, one PostgreSQL restart would fail every later request until the
        server itself restarted. A reconnect that fails raises psycopg's error (503)."""
        if self.dialect == "postgres" and not self._in_tx and self._conn.closed:
            logger.warning("the PostgreSQL connection was lost; reconnecting")
            self._conn = self._connect_postgres(self._url)
            logger.info("reconnected to PostgreSQL")
        return self._conn

    def sqlite_synchronous_in_effect(self) -> str:
        """The durability acknowledged writes get: ``full`` when they wait for a sync of
        the WAL (group commit), else SQLite's ``synchronous`` as the connection reports it."""
        if self._wal is not None:
            return "full"
        with self._lock:
            level = int(self._conn.execute("PRAGMA synchronous").fetchone()[0])
        return {0: "off", 1: "normal", 2: "full", 3: "extra"}.get(level, str(level))

    def make_durable(self, committed_at: float) -> None:
        """Block until every write committed before ``committed_at`` (time.monotonic())
        survives a power loss. PostgreSQL's commits already do (synchronous_commit)."""
        if self._wal is not None:
            self._wal.wait(committed_at)

    def run_script(self, sql: str) -> None:
        """Run several statements (a migration) inside the current transaction.

        SQLite's ``executescript`` would commit first, so the script is split into
        statements here (``complete_statement`` knows about strings and triggers).
        """
        with self._lock:
            if self.dialect == "postgres":
                self._live().execute(sql)
                return
            statement = ""
            for line in sql.splitlines(keepends=True):
                statement += line
                if sqlite3.complete_statement(statement):
                    self._conn.execute(statement)
                    statement = ""
            if statement.strip() and not _only_comments(statement):
                raise ValueError(f"unterminated SQL statement: {statement.strip()[:80]}")

    @contextmanager
    def migration_lock(self) -> Iterator[None]:
        """Hold the schema lock: replicas that start together migrate one at a time.

        PostgreSQL: a session advisory lock scoped to the current schema. SQLite: none
        needed, each migration's ``BEGIN IMMEDIATE`` already excludes other writers.
        """
        with self._lock:
            if self.dialect == "postgres":
                self.execute("migration_lock")
            try:
                yield
            finally:
                if self.dialect == "postgres":
                    self.execute("migration_unlock")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Run the enclosed queries atomically (nested use joins the outer transaction)."""
        with self._lock:
            if self._in_tx:
                yield
                return
            conn = self._live()
            self._in_tx = True
            try:
                if self.dialect == "sqlite":
                    self._conn.execute("BEGIN IMMEDIATE")
                    try:
                        yield
                    except BaseException:
                        self._conn.execute("ROLLBACK")
                        raise
                    self._conn.execute("COMMIT")
                else:
                    with conn.transaction():
                        yield
            finally:
                self._in_tx = False

    def query(self, name: str, /, **params: Any) -> list[dict[str, Any]]:
        """Run a named query and return its rows as dicts."""
        sql = self._queries[name]
        with self._lock:
            conn = self._live()
            if self.dialect == "postgres" and name in PLAN_WITH_VALUES:
                cursor = conn.execute(sql, params, prepare=False)
            else:
                cursor = conn.execute(sql, params)
            rows = cursor.fetchall() if cursor.description else []
        return [dict(row) for row in rows]

    def one(self, name: str, /, **params: Any) -> dict[str, Any] | None:
        rows = self.query(name, **params)
        return rows[0] if rows else None

    def execute(self, name: str, /, **params: Any) -> int:
        """Run a named statement and return the number of rows it changed."""
        with self._lock:
            cursor = self._live().execute(self._queries[name], params)
            return int(cursor.rowcount)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
            if self._wal is not None:
                self._wal.close()
