"""Data dir layout step 2: Qdrant local mode → the embedded vector store.

Releases up to 0.1.x kept vectors in ``qdrant-client``'s local mode under
``<data_dir>/qdrant`` (or ``--qdrant-path``), which scans every point in Python on each
search. This step copies every point of its ``morag_chunks`` collection (id, vector,
payload, unchanged) into the embedded store at ``<data_dir>/vectors`` (or
``--vector-path``), then renames the old directory to ``qdrant.migrated`` so it is
neither read again nor lost. Upserts by point id make the copy restartable: a step cut
short copies again from the start and overwrites what it had copied.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from morag_worker.server.embedded_store import EmbeddedStore, StoredPoint

#: The collection every release wrote to.
COLLECTION = "morag_chunks"
#: Points read and written per round: a few MB of vectors and text.
BATCH = 1000
MIGRATED_SUFFIX = ".migrated"


def migrate_local_mode(source: Path, target: Path, progress: Any) -> int:
    """Copy the local-mode collection at ``source`` into the embedded store at
    ``target``; returns the number of points (0 when there is nothing to copy)."""
    if not (source / "collection" / COLLECTION).is_dir():
        return 0
    try:
        from qdrant_client import QdrantClient, models
    except ImportError as exc:
        raise RuntimeError(
            f"{source} holds vectors of Qdrant local mode; migrating them needs "
            f"qdrant-client ({exc}): pip install 'morag-worker[server]'"
        ) from None
    client = QdrantClient(path=str(source))
    try:
        config = client.get_collection(COLLECTION).config
        params = config.params.vectors
        assert isinstance(params, models.VectorParams), "one unnamed vector per point"
        model = (config.metadata or {}).get("embedding_model")
        total = client.count(COLLECTION, exact=True).count
        store = EmbeddedStore(target, params.size, model)
        try:
            copied = _copy(client, store, total, progress)
        finally:
            store.close()
    finally:
        client.close()
    source.rename(source.with_name(source.name + MIGRATED_SUFFIX))
    progress(
        f"vector store: {copied} points moved from {source} (now {source.name}"
        f"{MIGRATED_SUFFIX}, safe to delete once search is checked) into {target}"
    )
    return copied


def _copy(client: Any, store: EmbeddedStore, total: int, progress: Any) -> int:
    copied = 0
    offset: Any = None
    while True:
        points, offset = client.scroll(COLLECTION, limit=BATCH, offset=offset, with_vectors=True)
        store.upsert([StoredPoint(str(p.id), list(p.vector), p.payload or {}) for p in points])
        copied += len(points)
        progress(f"vector store: copied {copied} of {total} points from Qdrant local mode")
        if offset is None:
            return copied


def layout_step(ctx: Any) -> None:
    """The data dir step (see :mod:`.datadir`)."""
    config = ctx.state.config
    migrate_local_mode(config.resolved_qdrant_path(), config.resolved_vector_path(), ctx.progress)
