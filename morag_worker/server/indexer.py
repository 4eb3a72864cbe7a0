"""Stores completed results' chunks in the vector store, off the request path.

A result is committed to the database first; this thread then picks up completed tasks
not yet indexed and upserts their chunks. Point ids derive from (task, chunk), so a
crash between upsert and marking, or a repeated result, never duplicates vectors.
If the vector store cannot be opened, results are still stored and served, search
answers 503 with the reason, and the reason is logged once.

One result that cannot be indexed never holds back the others. A failed attempt is
counted on its row with the error, and the row waits out a backoff while the rows
behind it are indexed; after ``index_max_attempts`` it is marked failed and left alone
until an operator retries it (``POST /api/v1/index/retry``). A failure is blamed on the
row only while the store answers its health check: when the store itself is down,
nothing is counted and the whole loop waits for it.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from loguru import logger
from pydantic import ValidationError

from morag_worker.protocol import TaskResult
from morag_worker.server.apierror import validation_summary
from morag_worker.server.metrics import INDEX_FAILURES

#: Idle wait between looks for new results; indexing lags completion by at most this.
INDEX_POLL_S = 0.5
#: After the store (or the database) failed as a whole, wait this long before trying
#: again: it may be restarting.
INDEX_RETRY_S = 5.0
#: Longest wait between two attempts at one failing row.
INDEX_BACKOFF_CAP_S = 300.0
#: Characters of an indexing error kept on the row: the cause, not a whole traceback.
INDEX_ERROR_CHARS = 2000


class StoreDown(Exception):
    """The vector store failed its health check: the failure is not the row's fault."""


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
    location = config.qdrant_url or str(config.resolved_vector_path())
    try:
        embedder = Embedder(config.embedding_model)
        return ChunkStore(location, embedder, api_key=config.qdrant_api_key or None)
    except Exception as exc:
        st.storage_error = f"cannot open the vector store at {location}: {exc}"
        return None


class Indexer:
    """The indexing thread: :meth:`index_batch` is one pass, callable alone in tests."""

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
        """Index up to ``limit`` due rows; returns how many were tried. Raises when the
        database or the store as a whole fails (nothing is counted against a row)."""
        rows = self.st.index_rows.due(limit)
        for row in rows:
            if self._stop.is_set():
                break
            try:
                count = self._store(row)
            except Exception as exc:
                self._attempt_failed(row, exc)
                continue
            self.st.index_rows.mark_indexed(row["task_id"])
            logger.debug("indexed {} chunks", count, task_id=row["task_id"])
        return len(rows)

    def _store(self, row: dict[str, Any]) -> int:
        result = TaskResult.model_validate(json.loads(row["result"]))
        source = str(result.metadata.get("source") or result.metadata.get("title") or "")
        count: int = self.st.storage.store(
            row["user_id"], row["task_id"], source, result, task_type=row["task_type"]
        )
        return count

    def _attempt_failed(self, row: dict[str, Any], exc: Exception) -> None:
        try:
            self.st.storage.check_health()
        except Exception as down:
            raise StoreDown(f"the vector store is unavailable: {down}") from exc
        config = self.st.config
        attempts = int(row["index_attempts"]) + 1
        now = time.time()
        delay_s = min(INDEX_BACKOFF_CAP_S, config.index_retry_backoff_s * 2 ** (attempts - 1))
        if isinstance(exc, ValidationError):
            error = f"the stored result is invalid: {validation_summary(exc)}"
        else:
            error = f"{type(exc).__name__}: {exc}"
        error = error[:INDEX_ERROR_CHARS]
        self.st.index_rows.attempt_failed(
            row["task_id"], error, now + delay_s, config.index_max_attempts
        )
        INDEX_FAILURES.inc()
        if attempts >= config.index_max_attempts:
            logger.error(
                "gave up indexing after {} attempts: {}", attempts, error, task_id=row["task_id"]
            )
        else:
            logger.warning(
                "indexing failed (attempt {} of {}), next try in {:.1f} s: {}",
                attempts,
                config.index_max_attempts,
                delay_s,
                error,
                task_id=row["task_id"],
            )
