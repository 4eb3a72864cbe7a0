"""The per-child model cache: hits, misses, LRU eviction under a byte budget, close."""

from __future__ import annotations

from morag_worker.models.cache import ModelCache, ModelKey


class Model:
    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_hit_miss_and_lru_eviction() -> None:
    cache = ModelCache(budget_bytes=100)
    loads: list[str] = []

    def loader(name: str):  # type: ignore[no-untyped-def]
        return lambda: loads.append(name) or Model(name)

    a = cache.get(ModelKey("whisper", "a"), loader("a"), size_bytes=60)
    assert cache.get(ModelKey("whisper", "a"), loader("a"), size_bytes=60) is a
    assert (cache.stats.hits, cache.stats.misses, loads) == (1, 1, ["a"])
    b = cache.get(ModelKey("whisper", "b", "cuda", "float16"), loader("b"), size_bytes=60)
    assert a.closed and not b.closed  # a was least recently used and did not fit
    assert cache.contents() == ["whisper:b:cuda:float16"] and cache.used_bytes() == 60
    cache.get(ModelKey("ocr", "c"), loader("c"), size_bytes=30)
    assert cache.contents() == ["whisper:b:cuda:float16", "ocr:c:cpu"]
    assert cache.evict(ModelKey("ocr", "c")) and not cache.evict(ModelKey("ocr", "c"))
    cache.close()
    assert b.closed and cache.contents() == [] and cache.stats.evictions == 3


def test_unbounded_cache_keeps_everything() -> None:
    cache = ModelCache()
    for n in range(5):
        cache.get(ModelKey("m", str(n)), lambda n=n: Model(str(n)), size_bytes=10**12)
    assert len(cache.contents()) == 5
