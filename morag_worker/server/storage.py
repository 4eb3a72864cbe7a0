"""Chunks of completed tasks → embeddings → a vector store, and searches over them.

:class:`ChunkStore` turns results into points and queries into vectors; where the
points live is its backend: by default the embedded store under the server's data dir
(:mod:`.embedded_store`: SQLite plus one HNSW graph per user, nothing to run), or with a
URL a Qdrant server or cluster (:mod:`.qdrant_store`). Both keep the same points: ids,
vectors and payloads move between them unchanged (``morag index export|import``).

Every point carries the payload ``user_id, task_id, source, chunk_index, text,
heading_path, page, start_s, end_s, task_type, embedding_model``. Point ids are uuid5 of
``(user_id, task_id, chunk_index)``: storing a retried or duplicated result overwrites
the same points instead of adding vectors. Every search is scoped to the caller's
``user_id``. Any thread may call any method.

All methods block (embedding and store I/O); the async server calls them in a thread.
"""

from __future__ import annotations

import math
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from morag_worker.errors import ConfigError
from morag_worker.models.embeddings import Embedder
from morag_worker.protocol import Chunk, SearchHit, TaskResult
from morag_worker.server.embedded_store import EmbeddedStore, StoredPoint
from morag_worker.server.hnsw_partition import HnswParams
from morag_worker.server.search_filters import check_scope, normalize

#: Namespace of point ids; changing it would orphan every stored point.
POINT_NAMESPACE = uuid.UUID("6f1c2d4e-8a7b-5c3d-9e0f-1a2b3c4d5e6f")


def point_id(user_id: str, task_id: str, chunk_index: int) -> str:
    """The deterministic id of a task's chunk. The user is part of it so that a task id
    reused under another user (a bug, or an imported task) can never overwrite vectors
    across users."""
    return str(uuid.uuid5(POINT_NAMESPACE, f"{user_id}\n{task_id}\n{chunk_index}"))


def _is_url(location: str) -> bool:
    return location.startswith(("http://", "https://"))


class ChunkStore:
    """Stores task chunks as vectors and searches them per user.

    ``location`` is a directory for the embedded store (created if missing) or an
    ``http(s)://`` URL of a Qdrant server (``api_key`` for Qdrant Cloud or a secured
    server; ``collection`` names its collection). The store records the embedder's
    dimension and model on first use; another dimension or model raises ConfigError.
    """

    def __init__(
        self,
        location: str | Path,
        embedder: Embedder,
        *,
        collection: str = "morag_chunks",
        api_key: str | None = None,
        params: HnswParams | None = None,
    ) -> None:
        self.embedder = embedder
        self._lock = threading.Lock()
        self._backend: Any = None
        target = str(location)
        if _is_url(target):
            from morag_worker.server.qdrant_store import QdrantStore

            self._backend = QdrantStore(
                target,
                lambda: embedder.dimension,
                embedder.model_id,
                collection=collection,
                api_key=api_key,
            )
            self._directory: Path | None = None
        else:
            if api_key:
                raise ConfigError("--qdrant-api-key needs a Qdrant URL, not a local path")
            self._directory = Path(target)
            self._directory.mkdir(parents=True, exist_ok=True)
        self._params = params

    @property
    def backend(self) -> Any:
        """The store, opened on first use (opening the embedded one needs the model's
        dimension, which loads the model)."""
        with self._lock:
            if self._backend is None:
                assert self._directory is not None
                self._backend = EmbeddedStore(
                    self._directory, self.embedder.dimension, self.embedder.model_id, self._params
                )
            return self._backend

    def describe(self) -> str:
        if self._directory is not None:
            return f"embedded HNSW store at {self._directory}"
        return str(self.backend.describe())

    # ---- writing ---------------------------------------------------------------------

    def store(
        self,
        user_id: str,
        task_id: str,
        source: str,
        result: TaskResult,
        task_type: str | None = None,
    ) -> int:
        """Upsert the result's chunks for ``user_id``; returns the number of points.

        Worker-computed vectors are used when ``metadata["embedding_model"]`` is this
        store's model and their length is its dimension; other chunks are embedded here.
        Points left from an earlier, longer result of the same task are removed. Raises
        ValueError for an empty user or task id or a result that repeats a chunk index.
        """
        check_scope(user_id, task_id)  # before any work
        indexes = [chunk.index for chunk in result.chunks]
        if len(set(indexes)) != len(indexes):
            # Two chunks with one index would share a point id: one would vanish.
            raise ValueError(f"task {task_id}: the result repeats a chunk index")
        vectors = self._vectors(result)
        base = {"user_id": user_id, "task_id": task_id, "source": source}
        if task_type is not None:
            base["task_type"] = task_type
        base["embedding_model"] = self.embedder.model_id
        points = [
            StoredPoint(point_id(user_id, task_id, chunk.index), vector, _payload(base, chunk))
            for chunk, vector in zip(result.chunks, vectors, strict=True)
        ]
        backend = self.backend
        backend.upsert(points)
        # A retry may produce fewer chunks than the attempt stored before it.
        backend.delete_task(user_id, task_id, keep={p.point_id for p in points})
        return len(points)

    def delete_task(self, user_id: str, task_id: str) -> int:
        """Remove every point of ``user_id``'s task; returns how many there were."""
        check_scope(user_id, task_id)
        return int(self.backend.delete_task(user_id, task_id))

    def import_points(self, points: list[StoredPoint]) -> None:
        """Upsert exported points as they are (ids, vectors, payloads). Raises ValueError
        for a point without ``user_id``/``task_id`` or with a vector of another length."""
        dimension = self.embedder.dimension
        for point in points:
            check_scope(point.payload.get("user_id", ""), point.payload.get("task_id", ""))
            if len(point.vector) != dimension or not _valid(point.vector, dimension):
                raise ValueError(
                    f"point {point.point_id}: a vector of {len(point.vector)} finite numbers, "
                    f"not all zero, is needed; this store holds dimension {dimension}"
                )
        self.backend.upsert(points)

    # ---- reading ---------------------------------------------------------------------

    def search(
        self, user_id: str, query: str, limit: int, filters: dict[str, Any] | None = None
    ) -> list[SearchHit]:
        """The ``limit`` chunks of ``user_id`` nearest to ``query``, best first.

        ``filters`` narrows further (see ``search_filters.FILTER_KEYS``); an unknown key
        or a malformed value raises ValueError naming it.
        """
        scoped = normalize(user_id, filters or {})
        [vector] = self.embedder.embed([query])
        found = self.backend.search(user_id, vector, limit, scoped)
        return [_hit(score, payload) for score, payload in found]

    def count(self, user_id: str) -> int:
        """How many points ``user_id`` has (exact)."""
        normalize(user_id, {})
        return int(self.backend.count(user_id))

    def export_points(self) -> Iterator[StoredPoint]:
        """Every stored point, for ``morag index export``."""
        return iter(self.backend.scroll())

    def check_health(self) -> None:
        """Raise when the store cannot serve at all (a Qdrant server that does not answer)."""
        if self._backend is not None:
            self._backend.check_health()

    def close(self) -> None:
        """Close the store (saving the embedded one's graphs); idempotent."""
        with self._lock:
            if self._backend is not None:
                self._backend.close()

    # ---- internals -------------------------------------------------------------------
    def _vectors(self, result: TaskResult) -> list[list[float]]:
        """One vector per chunk: the worker's where it can be trusted, else embedded now."""
        trusted = result.metadata.get("embedding_model") == self.embedder.model_id
        dimension = self.embedder.dimension if result.chunks else 0
        vectors: list[list[float] | None] = [
            chunk.embedding if trusted and _valid(chunk.embedding, dimension) else None
            for chunk in result.chunks
        ]
        missing = [i for i, vector in enumerate(vectors) if vector is None]
        fresh = self.embedder.embed([result.chunks[i].text for i in missing])
        for i, vector in zip(missing, fresh, strict=True):
            vectors[i] = vector
        return [vector for vector in vectors if vector is not None]


def _valid(vector: Sequence[float] | None, dimension: int) -> bool:
    return (
        vector is not None
        and len(vector) == dimension
        and all(math.isfinite(x) for x in vector)
        and any(x != 0.0 for x in vector)  # a zero vector has no cosine
    )


def _payload(base: dict[str, Any], chunk: Chunk) -> dict[str, Any]:
    return {
        **base,
        "chunk_index": chunk.index,
        "text": chunk.text,
        "heading_path": chunk.heading_path,
        "page": chunk.page,
        "start_s": chunk.start_s,
        "end_s": chunk.end_s,
    }


def _hit(score: float, payload: dict[str, Any]) -> SearchHit:
    return SearchHit(
        score=score,
        task_id=payload["task_id"],
        chunk_index=payload["chunk_index"],
        text=payload["text"],
        source=payload.get("source", ""),
        heading_path=payload.get("heading_path") or [],
        page=payload.get("page"),
        start_s=payload.get("start_s"),
        end_s=payload.get("end_s"),
    )
