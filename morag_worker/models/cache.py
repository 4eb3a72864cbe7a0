"""The per-child model cache.

Lifecycle (one instance per child process, created at child start):

1. ``get(key, loader, size_bytes)``: return the cached model for ``key`` or call
   ``loader()`` to load it, record the load time, and insert it. ``size_bytes`` is the
   model's footprint (an estimate is fine); when the byte budget would be exceeded,
   least-recently-used models are evicted first.
2. ``evict(key)``: drop one model explicitly, calling its ``close()`` if it has one.
3. ``close()``: evict everything; the child calls it before exiting.

Keys are ``(kind, name, device, compute_type)`` so that the same weights on another
device or precision are separate entries. ``contents()`` is what the child reports to
the supervisor for model-affinity dispatch; ``stats`` feed the metrics.
"""

from __future__ import annotations

import gc
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple


class ModelKey(NamedTuple):
    kind: str
    name: str
    device: str = "cpu"
    compute_type: str = ""

    def label(self) -> str:
        return ":".join(part for part in self if part)


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    load_seconds: float = 0.0
    evictions: int = 0


@dataclass
class _Entry:
    model: Any
    size_bytes: int


@dataclass
class ModelCache:
    #: Byte budget for all cached models together; 0 means unbounded.
    budget_bytes: int = 0
    stats: CacheStats = field(default_factory=CacheStats)
    _entries: OrderedDict[ModelKey, _Entry] = field(default_factory=OrderedDict)

    def get(self, key: ModelKey, loader: Callable[[], Any], size_bytes: int = 0) -> Any:
        """Return the model for ``key``, loading it with ``loader`` on a miss."""
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            self.stats.hits += 1
            return entry.model
        self.stats.misses += 1
        started = time.monotonic()
        model = loader()
        self.stats.load_seconds += time.monotonic() - started
        self._make_room(size_bytes)
        self._entries[key] = _Entry(model, size_bytes)
        return model

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def contents(self) -> list[str]:
        """Labels of the cached models, least recently used first."""
        return [key.label() for key in self._entries]

    def used_bytes(self) -> int:
        return sum(entry.size_bytes for entry in self._entries.values())

    def evict(self, key: ModelKey) -> bool:
        entry = self._entries.pop(key, None)
        if entry is None:
            return False
        self.stats.evictions += 1
        close = getattr(entry.model, "close", None)
        if callable(close):
            close()
        del entry
        gc.collect()
        return True

    def close(self) -> None:
        for key in list(self._entries):
            self.evict(key)

    def _make_room(self, size_bytes: int) -> None:
        if self.budget_bytes <= 0:
            return
        while self._entries and self.used_bytes() + size_bytes > self.budget_bytes:
            oldest = next(iter(self._entries))
            self.evict(oldest)
