"""Chunks of completed tasks → embeddings → Qdrant, and searches over them.

:class:`ChunkStore` owns exactly one Qdrant client. By default it is Qdrant's embedded
local mode on a directory under the server's data dir (nothing to run); with a URL it
talks to a Qdrant server or cluster. Embedded local mode locks its directory for one
client per process, so the server makes one ``ChunkStore`` and shares it; every Qdrant
call goes through one lock, so threads may call any method.

Every point carries the payload ``user_id, task_id, source, chunk_index, text,
heading_path, page, start_s, end_s, task_type, embedding_model``. Point ids are uuid5 of
``(task_id, chunk_index)``: storing a retried or duplicated result overwrites the same
points instead of adding vectors. Every search is filtered on the caller's ``user_id``.

All methods block (embedding and Qdrant I/O); the async server calls them in a thread.
"""

from __future__ import annotations

import math
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qdrant_client import QdrantClient, models

from morag_worker.errors import ConfigError
from morag_worker.models.embeddings import Embedder
from morag_worker.protocol import Chunk, SearchHit, TaskResult
from morag_worker.server.search_filters import build_filter, user_and_task

#: Namespace of point ids; changing it would orphan every stored point.
POINT_NAMESPACE = uuid.UUID("6f1c2d4e-8a7b-5c3d-9e0f-1a2b3c4d5e6f")
#: Points per upsert request: keeps a request to a Qdrant server well under its 32 MiB
#: default body limit (a 384-dim point with text is ~5 kB, a 1024-dim one ~10 kB).
UPSERT_BATCH = 256
#: Seconds a request to a Qdrant server may take; upserts of large results need more
#: than the client's 5 s default.
QDRANT_TIMEOUT_S = 60
#: Payload fields given a keyword index on a Qdrant server (local mode ignores indexes);
#: user_id is the tenant field, so Qdrant co-locates each user's points.
_KEYWORD_INDEXES = ("task_id", "source", "task_type")


def point_id(user_id: str, task_id: str, chunk_index: int) -> str:
    """The deterministic id of a task's chunk. The user is part of it so that a task id
    reused under another user (a bug, or an imported task) can never overwrite vectors
    across users."""
    return str(uuid.uuid5(POINT_NAMESPACE, f"{user_id}\n{task_id}\n{chunk_index}"))


def _is_url(location: str) -> bool:
    return location.startswith(("http://", "https://"))


class ChunkStore:
    """Stores task chunks as vectors in a Qdrant collection and searches them per user.

    ``location`` is a directory for embedded local mode (created if missing) or an
    ``http(s)://`` URL of a Qdrant server (``api_key`` for Qdrant Cloud or a secured
    server). The collection (cosine distance, the embedder's dimension) is created on
    first use; an existing one with another dimension or model raises ConfigError.
    """

    def __init__(
        self,
        location: str | Path,
        embedder: Embedder,
        *,
        collection: str = "morag_chunks",
        api_key: str | None = None,
    ) -> None:
        self.embedder = embedder
        self.collection = collection
        self._lock = threading.RLock()
        self._ready = False
        target = str(location)
        if _is_url(target):
            self._local = False
            # No version probe here: it would make constructing (at server start) wait on
            # the network; the first use checks the collection, which is what matters.
            self._client = QdrantClient(
                url=target, api_key=api_key, timeout=QDRANT_TIMEOUT_S, check_compatibility=False
            )
        else:
            if api_key:
                raise ConfigError("--qdrant-api-key needs a Qdrant URL, not a local path")
            Path(target).mkdir(parents=True, exist_ok=True)
            self._local = True
            self._client = QdrantClient(path=target)

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
        scope = user_and_task(user_id, task_id)  # validates both before any work
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
            models.PointStruct(
                id=point_id(user_id, task_id, chunk.index),
                vector=vector,
                payload=_payload(base, chunk),
            )
            for chunk, vector in zip(result.chunks, vectors, strict=True)
        ]
        with self._lock:
            self._ensure_collection()
            for start in range(0, len(points), UPSERT_BATCH):
                batch = points[start : start + UPSERT_BATCH]
                self._client.upsert(self.collection, points=batch, wait=True)
            self._delete_beyond(scope, [point.id for point in points])
        return len(points)

    def delete_task(self, user_id: str, task_id: str) -> int:
        """Remove every point of ``user_id``'s task; returns how many there were."""
        selector = user_and_task(user_id, task_id)
        with self._lock:
            self._ensure_collection()
            found = self._client.count(self.collection, count_filter=selector, exact=True)
            if found.count:
                self._client.delete(
                    self.collection, points_selector=models.FilterSelector(filter=selector)
                )
        return found.count

    # ---- reading ---------------------------------------------------------------------

    def search(
        self, user_id: str, query: str, limit: int, filters: dict[str, Any] | None = None
    ) -> list[SearchHit]:
        """The ``limit`` chunks of ``user_id`` nearest to ``query``, best first.

        ``filters`` narrows further (see ``search_filters.FILTER_KEYS``); an unknown key
        or a malformed value raises ValueError naming it.
        """
        query_filter = build_filter(user_id, filters or {})
        [vector] = self.embedder.embed([query])
        with self._lock:
            self._ensure_collection()
            response = self._client.query_points(
                self.collection,
                query=vector,
                query_filter=query_filter,
                limit=limit,
                with_payload=True,
            )
        return [_hit(point) for point in response.points]

    def count(self, user_id: str) -> int:
        """How many points ``user_id`` has (exact)."""
        user_only = build_filter(user_id, {})
        with self._lock:
            self._ensure_collection()
            return self._client.count(self.collection, count_filter=user_only, exact=True).count

    def check_health(self) -> None:
        """Raise when the store cannot serve at all (a Qdrant server that does not answer)."""
        with self._lock:
            self._client.get_collections()

    def describe(self) -> str:
        return "qdrant server" if not self._local else "qdrant local mode"

    def close(self) -> None:
        """Close the client (and release local mode's directory lock); idempotent."""
        with self._lock:
            self._client.close()

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

    def _ensure_collection(self) -> None:
        # Called with the lock held.
        if self._ready:
            return
        dimension = self.embedder.dimension
        if self._client.collection_exists(self.collection):
            self._check_collection(dimension)
        else:
            self._create_collection(dimension)
        self._ready = True

    def _create_collection(self, dimension: int) -> None:
        self._client.create_collection(
            self.collection,
            vectors_config=models.VectorParams(size=dimension, distance=models.Distance.COSINE),
            metadata={"embedding_model": self.embedder.model_id},
        )
        if self._local:
            return  # local mode has no payload indexes (it warns on each)
        self._client.create_payload_index(
            self.collection,
            "user_id",
            field_schema=models.KeywordIndexParams(
                type=models.KeywordIndexType.KEYWORD, is_tenant=True
            ),
        )
        for name in _KEYWORD_INDEXES:
            self._client.create_payload_index(
                self.collection, name, field_schema=models.PayloadSchemaType.KEYWORD
            )

    def _check_collection(self, dimension: int) -> None:
        config = self._client.get_collection(self.collection).config
        params = config.params.vectors
        size = params.size if isinstance(params, models.VectorParams) else None
        if size != dimension:
            raise ConfigError(
                f"Qdrant collection {self.collection!r} holds vectors of dimension {size}, "
                f"but the embedding model {self.embedder.model_id} makes {dimension}: "
                "configure the model the collection was built with, or another collection"
            )
        stored_model = (config.metadata or {}).get("embedding_model")
        if stored_model is not None and stored_model != self.embedder.model_id:
            raise ConfigError(
                f"Qdrant collection {self.collection!r} was built with the embedding model "
                f"{stored_model}, not {self.embedder.model_id}: its vectors are not "
                "comparable; configure that model, or another collection"
            )

    def _delete_beyond(self, scope: models.Filter, kept: list[models.ExtendedPointId]) -> None:
        # A retry may produce fewer chunks than the attempt stored before it.
        stale = models.Filter(must=[scope], must_not=[models.HasIdCondition(has_id=kept)])
        self._client.delete(self.collection, points_selector=models.FilterSelector(filter=stale))


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


def _hit(point: models.ScoredPoint) -> SearchHit:
    payload = point.payload or {}
    return SearchHit(
        score=point.score,
        task_id=payload["task_id"],
        chunk_index=payload["chunk_index"],
        text=payload["text"],
        source=payload.get("source", ""),
        heading_path=payload.get("heading_path") or [],
        page=payload.get("page"),
        start_s=payload.get("start_s"),
        end_s=payload.get("end_s"),
    )
