"""Which children serve which task types, and which child gets a task.

By default GPU children take the model-heavy types and CPU children (``--cpu-procs``)
take document and web; ``--pool-types`` changes the mapping. A type whose pool has no
children goes to the other pool, so a CPU-only host serves everything; a type no pool
names (``noop``, plugin types) runs anywhere. Among idle children of the right pool, one
that already holds the task's model is preferred (model-affinity dispatch).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from morag_worker.errors import ConfigError

if TYPE_CHECKING:
    from morag_worker.supervisor.pool import Slot

POOLS = ("gpu", "cpu")
#: The mapping ARCHITECTURE.md describes: models on GPUs, parsing on CPUs.
DEFAULT_POOL_TYPES = "gpu=audio,video,image,youtube;cpu=document,web"
#: The model family a task type loads first, for model-affinity dispatch.
MODEL_KIND = {"audio": "whisper", "video": "whisper", "youtube": "whisper", "image": "ocr"}

PoolTypes = Mapping[str, frozenset[str]]


def parse_pool_types(text: str, flag: str = "--pool-types") -> dict[str, frozenset[str]]:
    """``gpu=audio,video;cpu=document,web`` → ``{"gpu": {...}, "cpu": {...}}``."""
    mapping: dict[str, frozenset[str]] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        pool, sep, types = part.partition("=")
        pool = pool.strip().lower()
        if not sep or pool not in POOLS:
            raise ConfigError(
                f"{flag}: expected POOL=TYPE,TYPE;… with POOL gpu or cpu, got {part!r}"
            )
        if pool in mapping:
            raise ConfigError(f"{flag}: pool {pool!r} is named twice")
        names = frozenset(t.strip().lower() for t in types.split(",") if t.strip())
        for other, seen in mapping.items():
            if names & seen:
                raise ConfigError(
                    f"{flag}: {sorted(names & seen)[0]!r} is in both {other} and {pool}"
                )
        mapping[pool] = names
    return mapping


class Router:
    def __init__(self, pool_types: PoolTypes, pools_present: set[str]) -> None:
        self.pool_types = dict(pool_types)
        self.pools_present = set(pools_present)

    def preferred_pool(self, task_type: str) -> str | None:
        for pool, types in self.pool_types.items():
            if task_type in types:
                return pool
        return None  # diagnostic and plugin types run anywhere

    def pools_for(self, task_type: str) -> set[str]:
        preferred = self.preferred_pool(task_type)
        if preferred is None or preferred not in self.pools_present:
            return set(self.pools_present)
        return {preferred}

    def served_types(self, all_types: Iterable[str]) -> list[str]:
        return sorted(t for t in all_types if self.pools_for(t))

    def choose(self, idle: list[Slot], task_type: str) -> Slot | None:
        """The idle child to run ``task_type``: right pool, model already loaded if possible."""
        candidates = [s for s in idle if s.pool in self.pools_for(task_type)]
        if not candidates:
            return None
        kind = MODEL_KIND.get(task_type)
        if kind:
            warm = [s for s in candidates if any(m.startswith(kind + ":") for m in s.models)]
            if warm:
                return warm[0]
        # Fewest tasks done first spreads work and keeps recycling even.
        return min(candidates, key=lambda s: s.tasks_done)
