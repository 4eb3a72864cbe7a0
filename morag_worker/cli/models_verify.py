"""``morag models verify``: load each model the way a child would, and time it.

Each model is resolved by the loader the processors use (so a model that verifies here
is one a child finds) and loaded on the chosen device; the report gives the device, the
seconds the load took, where the files came from, and the error when it failed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from morag_worker.models.cache import ModelCache
from morag_worker.models.catalog import ModelRef


@dataclass(frozen=True)
class Verdict:
    ref: ModelRef
    device: str
    ok: bool
    load_s: float
    detail: str  # the path loaded, or why it failed


def pick_device(requested: str) -> str:
    """``cpu`` or ``cuda``; ``auto`` is cuda when torch or CTranslate2 sees a GPU."""
    if requested != "auto":
        return requested
    try:
        import torch

        if torch.cuda.is_available():
            return "cuda"
    except ImportError:
        pass
    try:
        import ctranslate2

        return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    except ImportError:
        return "cpu"


def _load(ref: ModelRef, device: str, models: ModelCache) -> str:
    """Load ``ref`` into ``models``; returns where its files are."""
    if ref.kind == "whisper":
        from morag_worker.models.whisper import get_transcriber, resolve_ct2
        from morag_worker.settings import ProcessorSettings

        get_transcriber(models, ProcessorSettings(whisper_model=ref.name), device, ref.name)
        return str(resolve_ct2(ref.name))
    if ref.kind == "embedding":
        from morag_worker.models.embeddings import Embedder

        embedder = Embedder(ref.name, device=device).load()
        return f"{embedder.source.path} ({embedder.dimension} dimensions)"
    if ref.kind == "resemblyzer":
        from morag_worker.processors.diarize import preload

        preload(models, device)
        return "inside the resemblyzer package"
    if ref.kind == "pyannote":
        # The loader the diarization step uses; it finds the pipeline locally or says why not.
        from morag_worker.processors.diarize import _load_pyannote

        _load_pyannote(ref.name, device)
        return ref.name
    raise ValueError(f"{ref.spec}: not a model kind the workers load")


def verify(ref: ModelRef, device: str) -> Verdict:
    models = ModelCache()
    started = time.monotonic()
    try:
        detail = _load(ref, device, models)
        ok = True
    except Exception as exc:  # any failure is the verdict, reported with its message
        detail, ok = f"{type(exc).__name__}: {exc}", False
    finally:
        models.close()
    return Verdict(ref, device, ok, time.monotonic() - started, detail)
