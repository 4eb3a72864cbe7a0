"""Points in a Qdrant server or cluster (``--qdrant-url``), with the embedded store's API.

The collection layout is the one every release used: one collection (``morag_chunks``),
one unnamed cosine vector, point ids ``point_id(user, task, chunk)``, the payload of
:mod:`.storage`, a tenant keyword index on ``user_id`` (Qdrant co-locates each user's
points) and keyword indexes on ``task_id``, ``source`` and ``task_type``. Points move
between this store and the embedded one unchanged (``morag index export|import``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from qdrant_client import QdrantClient, models

from morag_worker.errors import ConfigError
from morag_worker.server.embedded_store import StoredPoint

#: Points per upsert request: keeps a request under Qdrant's 32 MiB default body limit
#: (a 384-dim point with text is ~5 kB, a 1024-dim one ~10 kB).
UPSERT_BATCH = 256
#: Seconds a request may take; upserts of large results need more than the client's 5 s.
QDRANT_TIMEOUT_S = 60
#: Payload fields given a keyword index besides the tenant field ``user_id``.
_KEYWORD_INDEXES = ("task_id", "source", "task_type")


def _filter(user_id: str, filters: dict[str, list[str]]) -> models.Filter:
    must: list[models.Condition] = [
        models.FieldCondition(key="user_id", match=models.MatchValue(value=user_id))
    ]
    for key, values in filters.items():
        match: Any = (
            models.MatchValue(value=values[0]) if len(values) == 1 else models.MatchAny(any=values)
        )
        must.append(models.FieldCondition(key=key, match=match))
    return models.Filter(must=must)


class QdrantStore:
    """One collection on a Qdrant server; created on first use, checked when it exists.

    ``location`` is the server's URL (or ``:memory:``, qdrant-client's in-process
    implementation of the same API, where no server can run).
    """

    def __init__(
        self,
        location: str,
        dimension_of: Any,
        model_id: str,
        *,
        collection: str = "morag_chunks",
        api_key: str | None = None,
    ) -> None:
        #: Called on first use only: learning the dimension loads the embedding model.
        self._dimension_of = dimension_of
        self.model_id = model_id
        self.collection = collection
        self._lock = threading.RLock()
        self._ready = False
        # No version probe: it would make constructing (at server start) wait on the
        # network; the first use checks the collection, which is what matters.
        self._client = QdrantClient(
            location=location, api_key=api_key, timeout=QDRANT_TIMEOUT_S, check_compatibility=False
        )

    def describe(self) -> str:
        return f"qdrant server (collection {self.collection})"

    # ---- writing ---------------------------------------------------------------------

    def upsert(self, points: list[StoredPoint]) -> None:
        structs = [
            models.PointStruct(id=p.point_id, vector=p.vector, payload=p.payload) for p in points
        ]
        with self._lock:
            self._ensure_collection()
            for start in range(0, len(structs), UPSERT_BATCH):
                batch = structs[start : start + UPSERT_BATCH]
                self._client.upsert(self.collection, points=batch, wait=True)

    def delete_task(self, user_id: str, task_id: str, keep: set[str] | None = None) -> int:
        scope = _filter(user_id, {"task_id": [task_id]})
        if keep:
            scope = models.Filter(must=[scope], must_not=[models.HasIdCondition(has_id=list(keep))])
        with self._lock:
            self._ensure_collection()
            found = self._client.count(self.collection, count_filter=scope, exact=True).count
            if found:
                selector = models.FilterSelector(filter=scope)
                self._client.delete(self.collection, points_selector=selector)
        return found

    # ---- reading ---------------------------------------------------------------------

    def search(
        self, user_id: str, vector: list[float], limit: int, filters: dict[str, list[str]]
    ) -> list[tuple[float, dict[str, Any]]]:
        with self._lock:
            self._ensure_collection()
            response = self._client.query_points(
                self.collection,
                query=vector,
                query_filter=_filter(user_id, filters),
                limit=limit,
                with_payload=True,
            )
        return [(point.score, point.payload or {}) for point in response.points]

    def count(self, user_id: str) -> int:
        with self._lock:
            self._ensure_collection()
            scope = _filter(user_id, {})
            return self._client.count(self.collection, count_filter=scope, exact=True).count

    def scroll(self, batch: int = 1000) -> Iterator[StoredPoint]:
        offset: Any = None
        while True:
            with self._lock:
                self._ensure_collection()
                points, offset = self._client.scroll(
                    self.collection, limit=batch, offset=offset, with_vectors=True
                )
            for point in points:
                vector: Any = point.vector  # one unnamed dense vector per point
                yield StoredPoint(str(point.id), [float(x) for x in vector], point.payload or {})
            if offset is None:
                return

    def check_health(self) -> None:
        with self._lock:
            self._client.get_collections()

    def close(self) -> None:
        with self._lock:
            self._client.close()

    # ---- the collection --------------------------------------------------------------

    def _ensure_collection(self) -> None:
        # Called with the lock held.
        if self._ready:
            return
        dimension = self._dimension_of()
        if self._client.collection_exists(self.collection):
            self._check_collection(dimension)
        else:
            self._create_collection(dimension)
        self._ready = True

    def _create_collection(self, dimension: int) -> None:
        self._client.create_collection(
            self.collection,
            vectors_config=models.VectorParams(size=dimension, distance=models.Distance.COSINE),
            metadata={"embedding_model": self.model_id},
        )
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
                f"but the embedding model {self.model_id} makes {dimension}: "
                "configure the model the collection was built with, or another collection"
            )
        stored_model = (config.metadata or {}).get("embedding_model")
        if stored_model is not None and stored_model != self.model_id:
            raise ConfigError(
                f"Qdrant collection {self.collection!r} was built with the embedding model "
                f"{stored_model}, not {self.model_id}: its vectors are not "
                "comparable; configure that model, or another collection"
            )
