"""Which children serve which task types, and which child gets a task.

By default GPU children take the model-heavy types and CPU children (``--cpu-procs``)
take document and web; ``--pool-types`` changes the mapping. A type whose pool has no
children goes to the other pool, so a CPU-only host serves everything; a type no pool
names (``noop``, plugin types) runs anywhere. Among idle children of the right pool, one
that already holds the task's model is preferred (model-affinity dispatch). The mapping
itself is parsed with the configuration (``morag_worker.config.parse_pool_types``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from morag_worker.supervisor.pool import Slot

#: The model family a task type loads first, for model-affinity dispatch.
MODEL_KIND = {"audio": "whisper", "video": "whisper", "youtube": "whisper", "image": "ocr"}

PoolTypes = Mapping[str, frozenset[str]]


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
