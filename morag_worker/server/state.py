"""The server's configuration and the objects every route shares."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loguru import logger

from morag_worker import __version__
from morag_worker.protocol import TASK_TYPES
from morag_worker.server.auth import KeyStore
from morag_worker.server.datadir import (
    LayoutError,
    make_private,
    migrate_data_dir,
    pending_steps,
)
from morag_worker.server.db import Database
from morag_worker.server.disk import DiskMonitor
from morag_worker.server.files import FileStore
from morag_worker.server.index_rows import IndexRows
from morag_worker.server.limits import LongPollGate, RequestLimits
from morag_worker.server.migrate import Migrator
from morag_worker.server.notify import Notifier
from morag_worker.server.queue import QueuePolicy, TaskQueue
from morag_worker.server.sessions import SessionStore
from morag_worker.server.uploads import UploadSessions
from morag_worker.server.workers import WorkerRegistry

#: Default deadline per task type, in seconds: long media may take a while on a busy GPU,
#: a web page or an image should not.
DEFAULT_TIMEOUTS_S: dict[str, float] = {
    "audio": 3 * 3600.0,
    "video": 4 * 3600.0,
    "youtube": 4 * 3600.0,
    "document": 1800.0,
    "image": 600.0,
    "web": 300.0,
    "noop": 3600.0,
}


@dataclass(frozen=True)
class ServerConfig:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8000
    #: ``sqlite:///path`` (default: ``<data_dir>/morag.db``) or ``postgresql://…``.
    database_url: str = ""
    #: 2 GiB: a long lossless recording fits; anything larger should be split or linked.
    max_upload_bytes: int = 2 << 30
    #: Long-poll cap: under typical proxy idle timeouts (60 s) with room to spare.
    max_wait_s: float = 30.0
    policy: QueuePolicy = field(default_factory=QueuePolicy)
    limits: RequestLimits = field(default_factory=RequestLimits)
    #: Stored files no task refers to, and abandoned partial uploads, are removed after
    #: this long: far beyond the milliseconds between storing a file and recording its
    #: task, and beyond --body-timeout for an upload in progress.
    file_grace_s: float = 3600.0
    #: /health says degraded below this much free space under the data dir: room for a
    #: few large uploads and the database's growth before writes start failing.
    min_free_disk_bytes: int = 256 << 20
    #: SQLite's ``synchronous``: "full" (durable against power loss) or "normal".
    sqlite_synchronous: str = "full"
    #: Extra task types served by worker plugins, beyond the built-in ones.
    extra_task_types: tuple[str, ...] = ()
    #: Qdrant: a URL for a server/cluster, else the embedded store under the data dir.
    qdrant_url: str = ""
    #: Where releases up to 0.1.x kept Qdrant local mode (migrated at start): default
    #: ``<data_dir>/qdrant``.
    qdrant_path: str = ""
    #: The embedded vector store's directory: default ``<data_dir>/vectors``.
    vector_path: str = ""
    qdrant_api_key: str = ""
    #: Embedding model for stored chunks and queries (local path or cached name).
    embedding_model: str = "all-MiniLM-L6-v2"
    #: Turn indexing into Qdrant off (results are still stored and served).
    index_results: bool = True
    #: Failed attempts before the indexer gives up on a result and marks it failed: five
    #: ride out a flaky moment, and one bad result never holds back the rows behind it.
    index_max_attempts: int = 5
    #: Wait before a failed result's next attempt: base * 2^(attempts - 1), capped at 5
    #: minutes, so five attempts span about a minute and a quarter.
    index_retry_backoff_s: float = 5.0
    #: Apply pending schema and data-dir migrations at start. Operators who migrate
    #: explicitly (``morag-server migrate``) turn it off; the server then refuses to
    #: start on a schema that is not current.
    auto_migrate: bool = True

    @property
    def task_types(self) -> tuple[str, ...]:
        return TASK_TYPES + tuple(t for t in self.extra_task_types if t not in TASK_TYPES)

    def resolved_vector_path(self) -> Path:
        return Path(self.vector_path) if self.vector_path else self.data_dir / "vectors"

    def resolved_qdrant_path(self) -> Path:
        return Path(self.qdrant_path) if self.qdrant_path else self.data_dir / "qdrant"

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'morag.db'}"


@dataclass
class ServerState:
    config: ServerConfig
    db: Database
    queue: TaskQueue
    keys: KeyStore
    files: FileStore
    notifier: Notifier
    workers: WorkerRegistry
    disk: DiskMonitor
    long_polls: LongPollGate
    sessions: SessionStore
    index_rows: IndexRows
    uploads: UploadSessions
    storage: Any = None
    storage_error: str = ""

    async def acknowledge(self, committed_at: float) -> None:
        """Return once writes committed before ``committed_at`` survive a power loss: a
        route awaits this before it acknowledges a write (server/walsync.py). Other
        requests, claims included, run meanwhile."""
        if self.db.dialect == "sqlite" and self.db.sqlite_synchronous == "full":
            await asyncio.to_thread(self.db.make_durable, committed_at)

    def health_report(self) -> dict[str, object]:
        """What ``/health`` says: ``degraded`` (with ``problems`` in words) when the server
        serves with a fault a restart cannot fix (a full disk, search unavailable)."""
        self.keys.count()  # the database answers (an error here is a 500)
        problems = list(self.disk.problems())
        search = search_status(self)
        if search.startswith("unavailable"):
            problems.append(f"search is {search}")
        body: dict[str, object] = {
            "status": "degraded" if problems else "ok",
            "version": __version__,
            "database": self.db.dialect,
            "search": search,
            "problems": problems,
            "disk_free_bytes": self.disk.free_bytes(),
        }
        if self.db.dialect == "sqlite":
            body["sqlite_synchronous"] = self.db.sqlite_synchronous_in_effect()
        return body


def search_status(st: ServerState) -> str:
    """``on``, ``off`` (--no-index) or ``unavailable: <why>`` (the store failed to open)."""
    if not st.config.index_results:
        return "off"
    if st.storage_error:
        return f"unavailable: {st.storage_error}"
    return "on"


def build_state(config: ServerConfig) -> ServerState:
    """Open the database and the data dir, migrated (or checked) to this code's versions.

    Raises :class:`SchemaError` or :class:`LayoutError` when they cannot be used.
    """
    make_private(config.data_dir)
    db = Database(config.resolved_database_url(), config.sqlite_synchronous)
    try:
        migrator = Migrator(db)
        if config.auto_migrate:
            migrator.migrate(progress=logger.info)
        else:
            migrator.require_current()
        keys = KeyStore(db)
        files = FileStore(config.data_dir / "files")
        st = ServerState(
            config=config,
            db=db,
            queue=TaskQueue(db, config.policy),
            keys=keys,
            files=files,
            notifier=Notifier(db),
            workers=WorkerRegistry(db, live_window_s=config.max_wait_s + config.policy.lease_ttl_s),
            disk=DiskMonitor(config.data_dir, config.min_free_disk_bytes),
            long_polls=LongPollGate(config.limits.max_long_polls_per_key),
            sessions=SessionStore(db, keys),
            index_rows=IndexRows(db),
            uploads=UploadSessions(files, config.file_grace_s),
        )
        if config.auto_migrate:
            migrate_data_dir(config.data_dir, st, progress=logger.info)
        elif pending := pending_steps(config.data_dir):
            raise LayoutError(
                f"the data dir {config.data_dir} has {len(pending)} pending layout steps; "
                "run `morag-server migrate` first (or start without --no-auto-migrate)"
            )
    except BaseException:
        db.close()
        raise
    return st
