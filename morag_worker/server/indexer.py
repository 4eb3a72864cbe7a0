"""Stores completed results' chunks in the vector store, off the request path.

A result is committed to the database first; this thread then picks up completed tasks
not yet indexed and upserts their chunks. Point ids derive from (task, chunk), so a
crash between upsert and marking, or a repeated result, never duplicates vectors.
If the vector store cannot be opened, results are still stored and served, search
answers 503 with the reason, and the reason is logged once.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from loguru import logger

from morag_worker.protocol import TaskResult

#: Idle wait between looks for new results; indexing lags completion by at most this.
INDEX_POLL_S = 0.5
#: After a failed upsert, wait this long before trying again (the store may be restarting).
INDEX_RETRY_S = 5.0


def open_storage(st: Any) -> Any:
    """Open the chunk store named by the config, or return None with ``st.storage_error``."""
    config = st.config
    if not config.index_results:
        st.storage_error = "indexing is turned off (--no-index)"
        return None
    try:
        from morag_worker.models.embeddings import Embedder
        from morag_worker.server.storage import ChunkStore
    except ImportError as exc:
        st.storage_error = (
            f"the server extra is not fully installed ({exc}); install morag-worker[server]"
        )
        return None
    location = config.qdrant_url or config.qdrant_path or str(config.data_dir / "qdrant")
    try:
        embedder = Embedder(config.embedding_model)
        return ChunkStore(location, embedder, api_key=config.qdrant_api_key or None)
    except Exception as exc:
        st.storage_error = f"cannot open the vector store at {location}: {exc}"
        return None


class Indexer:
    def __init__(self, st: Any) -> None:
        self.st = st
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.st.storage = open_storage(self.st)
        if self.st.storage is None:
            logger.warning("search disabled: {}", self.st.storage_error)
            return
        self._thread = threading.Thread(target=self._run, name="indexer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.st.storage is not None:
            self.st.storage.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                done = self.index_batch()
            except Exception:
                logger.exception("indexing results failed; retrying in {} s", INDEX_RETRY_S)
                self._stop.wait(INDEX_RETRY_S)
                continue
            if not done:
                self._stop.wait(INDEX_POLL_S)

    def index_batch(self, limit: int = 20) -> int:
        rows = self.st.db.query("unindexed", limit=limit)
        for row in rows:
            result = TaskResult.model_validate(json.loads(row["result"]))
            source = str(result.metadata.get("source") or result.metadata.get("title") or "")
            count = self.st.storage.store(
                row["user_id"], row["task_id"], source, result, task_type=row["task_type"]
            )
            self.st.db.execute("mark_indexed", task_id=row["task_id"], now=time.time())
            logger.debug("indexed {} chunks", count, task_id=row["task_id"])
        return len(rows)
