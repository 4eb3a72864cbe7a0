"""Which children serve which task types, and which child gets a task.

GPU children take the model-heavy types; CPU children (``--cpu-procs``) take document
and web. A type whose preferred pool has no children goes to the other pool, so a
CPU-only host serves everything. Among idle children of the right pool, one that
already holds the task's model is preferred (model-affinity dispatch).
"""

from __future__ import annotations

from collections.abc import Iterable

from morag_worker.supervisor.pool import Slot

GPU_TYPES = frozenset({"audio", "video", "image", "youtube"})
CPU_TYPES = frozenset({"document", "web"})
#: The model family a task type loads first, for model-affinity dispatch.
MODEL_KIND = {"audio": "whisper", "video": "whisper", "youtube": "whisper", "image": "ocr"}


def preferred_pool(task_type: str) -> str | None:
    if task_type in GPU_TYPES:
        return "gpu"
    if task_type in CPU_TYPES:
        return "cpu"
    return None  # diagnostic and plugin types run anywhere


def pools_for(task_type: str, pools_present: set[str]) -> set[str]:
    preferred = preferred_pool(task_type)
    if preferred is None or preferred not in pools_present:
        return set(pools_present)
    return {preferred}


def served_types(all_types: Iterable[str], pools_present: set[str]) -> list[str]:
    return sorted(t for t in all_types if pools_for(t, pools_present))


def choose(idle: list[Slot], task_type: str, pools_present: set[str]) -> Slot | None:
    """The idle child to run ``task_type``: right pool, model already loaded if possible."""
    candidates = [s for s in idle if s.pool in pools_for(task_type, pools_present)]
    if not candidates:
        return None
    kind = MODEL_KIND.get(task_type)
    if kind:
        warm = [s for s in candidates if any(m.startswith(kind + ":") for m in s.models)]
        if warm:
            return warm[0]
    # Least recently started first spreads work; fewest tasks done keeps recycling even.
    return min(candidates, key=lambda s: s.tasks_done)
