"""The FastAPI application: routes, error bodies, and the background loops.

Background loops (started with the app, stopped with it):
- the reaper returns expired leases to the queue and wakes long-polls when it does;
- the indexer stores completed results' chunks in Qdrant (see :mod:`.indexer`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI
from loguru import logger

from morag_worker import __version__
from morag_worker.server import errors, routes_admin, routes_index, routes_tasks, routes_workers
from morag_worker.server.indexer import Indexer
from morag_worker.server.metrics import REGISTRY, QueueCollector
from morag_worker.server.state import ServerConfig, ServerState, build_state

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


def create_app(config: ServerConfig) -> FastAPI:
    st = build_state(config)
    indexer = Indexer(st)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        created = st.keys.bootstrap_admin(config.data_dir)
        if created:
            logger.info("created the first admin key; it is in {} (mode 0600)", created)
        collector = QueueCollector(st.db, config.task_types)
        REGISTRY.register(collector)
        indexer.start()
        st.notifier.start_listening(config.resolved_database_url())
        reaper = asyncio.create_task(_reap(st))
        try:
            yield
        finally:
            reaper.cancel()
            st.notifier.stop_listening()
            indexer.stop()
            REGISTRY.unregister(collector)
            st.db.close()

    app = FastAPI(title="morag-worker server", version=__version__, lifespan=lifespan)
    app.state.morag = st
    errors.install_handlers(app)
    app.include_router(routes_workers.router)
    app.include_router(routes_tasks.router)
    app.include_router(routes_admin.router)
    app.include_router(routes_index.router)
    return app
