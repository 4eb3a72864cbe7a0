"""The FastAPI application: routes, error bodies, and the background loops.

Background loops (started with the app, stopped with it):
- the reaper returns expired leases to the queue and wakes long-polls when it does;
- the indexer stores completed results' chunks in Qdrant (see :mod:`.indexer`);
- the file sweep removes stored files no task refers to (see :mod:`.sweep`).

Every request body is read under the limits of :mod:`.limits` (:class:`BodyGuard`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from fastapi import FastAPI
from loguru import logger

from morag_worker import __version__
from morag_worker.server import (
    errors,
    routes_admin,
    routes_index,
    routes_search,
    routes_tasks,
    routes_ui,
    routes_uploads,
    routes_workers,
)
from morag_worker.server.db import safe_url
from morag_worker.server.indexer import Indexer
from morag_worker.server.limits import BodyGuard
from morag_worker.server.metrics import (
    LONG_POLLS_WAITING,
    REGISTRY,
    IndexCollector,
    QueueCollector,
)
from morag_worker.server.state import ServerConfig, ServerState, build_state
from morag_worker.server.sweep import FileSweeper

#: How often expired leases are looked for. Lease expiry is measured in tens of seconds,
#: so half a second adds little delay and the query is one indexed UPDATE.
REAP_INTERVAL_S = 0.5


async def _reap(st: ServerState) -> None:
    while True:
        await asyncio.sleep(REAP_INTERVAL_S)
        try:
            changed = st.queue.reclaim_expired()
        except Exception:
            logger.exception("reclaiming expired leases failed; retrying")
            continue
        if changed:
            for row in changed:
                logger.warning("lease expired", task_id=row["task_id"], state=row["state"])
            await st.notifier.notify()


async def _sweep(sweeper: FileSweeper) -> None:
    while True:
        await asyncio.sleep(sweeper.interval_s)
        try:
            removed, freed = await asyncio.to_thread(sweeper.sweep)
        except Exception:
            logger.exception("sweeping unreferenced files failed; retrying")
            continue
        if removed:
            logger.info("file sweep removed {} files no task refers to ({} bytes)", removed, freed)


def _announce(config: ServerConfig) -> None:
    """One line that says what this server is: where it listens and what it uses."""
    host = f"[{config.host}]" if ":" in config.host else config.host
    search = "on" if config.index_results else "off (--no-index)"
    where = config.qdrant_url or config.qdrant_path or str(config.data_dir / "qdrant")
    logger.info(
        "morag-server {} serving http://{}:{}: database {}, data dir {}, search {}{}",
        __version__,
        host,
        config.port,
        safe_url(config.resolved_database_url()),
        config.data_dir,
        search,
        f" ({safe_url(where)})" if config.index_results else "",
    )


def create_app(config: ServerConfig) -> FastAPI:
    st = build_state(config)
    indexer = Indexer(st)
    sweeper = FileSweeper(st.files, st.queue.referenced_files, config.file_grace_s)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        created = st.keys.bootstrap_admin(config.data_dir)
        st.db.make_durable(time.monotonic())  # migrations and the first key: before serving
        if created:
            logger.info("created the first admin key; it is in {} (mode 0600)", created)
        collector = QueueCollector(st.queue.counts, st.workers.online_count, config.task_types)
        REGISTRY.register(collector)
        index_collector = IndexCollector(st.index_rows.counts)
        REGISTRY.register(index_collector)
        LONG_POLLS_WAITING.set_function(st.long_polls.total)
        indexer.start()
        st.notifier.start_listening(config.resolved_database_url())
        loops = [asyncio.create_task(_reap(st)), asyncio.create_task(_sweep(sweeper))]
        _announce(config)
        try:
            yield
        finally:
            for loop in loops:
                loop.cancel()
            st.notifier.stop_listening()
            indexer.stop()
            REGISTRY.unregister(collector)
            REGISTRY.unregister(index_collector)
            st.db.close()

    app = FastAPI(title="morag-worker server", version=__version__, lifespan=lifespan)
    app.state.morag = st
    errors.install_handlers(app)
    app.add_middleware(BodyGuard, limits=config.limits)
    app.include_router(routes_workers.router)
    app.include_router(routes_tasks.router)
    app.include_router(routes_uploads.router)
    app.include_router(routes_admin.router)
    app.include_router(routes_search.router)
    app.include_router(routes_index.router)
    app.include_router(routes_ui.router)
    return app
