"""Chunk embeddings computed in the worker, for tasks that ask for them.

A task whose parameters hold ``embed: true`` gets its chunks embedded here, on the
child's device (its GPU when it has one), with the model named by
``ProcessorSettings.embedding_model``. The result then carries each vector in
``Chunk.embedding`` and the model's identity in ``metadata["embedding_model"]``; the
server uses those vectors only when that identity and the dimension match its own
model, and re-embeds otherwise. Without ``embed: true`` the result is left alone and
the server embeds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from morag_worker.models.cache import ModelCache, ModelKey
from morag_worker.models.embeddings import Embedder
from morag_worker.processors.base import TaskContext, bool_parameter
from morag_worker.protocol import TaskResult


def wants_embedding(parameters: Mapping[str, Any]) -> bool:
    """Whether the task asked for worker-side embeddings (``embed``: a bool or a word).

    Raises BadInput for a value that is neither, so that a typo is not silently ignored.
    """
    return bool_parameter(parameters, "embed")


def maybe_embed(ctx: TaskContext, result: TaskResult) -> TaskResult:
    """Return ``result`` with its chunks embedded when the task asked for it, else as is.

    The model comes from the child's model cache (loaded on the first task that needs
    it); a model that is not installed raises ModelMissing, a non-retryable failure.
    """
    if not wants_embedding(ctx.parameters):
        return result
    embedder = _embedder(ctx)
    ctx.report(0.95, "embedding")
    vectors = embedder.embed([chunk.text for chunk in result.chunks])
    chunks = [
        chunk.model_copy(update={"embedding": vector})
        for chunk, vector in zip(result.chunks, vectors, strict=True)
    ]
    metadata = {**result.metadata, "embedding_model": embedder.model_id}
    return result.model_copy(update={"chunks": chunks, "metadata": metadata})


def _embedder(ctx: TaskContext) -> Embedder:
    return cached_embedder(ctx.models, ctx.settings.embedding_model, ctx.device)


def cached_embedder(models: ModelCache, name: str, device: str) -> Embedder:
    """The embedder for ``name`` on ``device`` from the child's cache (loaded on a miss)."""
    # Resolving is a few file look-ups; it also fails fast with ModelMissing before
    # the cache makes room for a model that cannot load.
    fresh = Embedder(name, device=device)
    key = ModelKey("embedding", fresh.model_id, fresh.device)
    cached: Embedder = models.get(key, fresh.load, size_bytes=fresh.source.size_bytes())
    return cached
