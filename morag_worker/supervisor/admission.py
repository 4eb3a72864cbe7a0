"""VRAM-aware admission: lease a GPU task type only when some GPU child has room for
its model.

A child has room when it already holds a model of the type's family (its cache report),
or when the GPU's free memory (NVML, from the watchdog's last sample) covers the
type's model estimate, and the child's own soft GPU limit, if set, leaves that much.
A GPU NVML could not read is assumed to have room: admission only ever holds back work
it can show would not fit, it never blocks on missing data. GPU types are not leased at
all once every GPU child is quarantined.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from morag_worker.supervisor.routing import MODEL_KIND, Router

if TYPE_CHECKING:
    from morag_worker.supervisor.pool import Slot
    from morag_worker.supervisor.watchdog import Watchdog

_GIB = 2**30
#: GPU memory a task type needs when its model is not loaded yet: weights in float16 plus
#: working memory, for the default models (faster-whisper ``small``/``medium`` ≈ 0.5-1.5
#: GiB with activations; OCR and image models well under 1 GiB). Deliberately rounded
#: up: a refused lease costs one poll interval, an out-of-memory costs a child.
MODEL_BYTES = {"audio": 2 * _GIB, "video": 2 * _GIB, "youtube": 2 * _GIB, "image": 1 * _GIB}


def has_room(slot: Slot, task_type: str, watchdog: Watchdog) -> bool:
    kind = MODEL_KIND.get(task_type)
    if kind and any(m.startswith(kind + ":") for m in slot.models):
        return True
    need = MODEL_BYTES.get(task_type, 0)
    reading = watchdog.readings.get(slot.gpu) if slot.gpu is not None else None
    if not need or reading is None:
        return True
    room = reading.memory.free_bytes
    soft, _ = watchdog.gpu_limits(slot.gpu)
    if soft:
        room = min(room, soft - slot.gpu_bytes)
    return room >= need


def admitted(types: list[str], router: Router, slots: list[Slot], watchdog: Watchdog) -> list[str]:
    """The subset of ``types`` to lease now. A type some CPU child can run passes; a type
    only GPU children run passes while a GPU child that is not quarantined has room for
    it (none left: nothing could run it, so it is not leased)."""
    gpu_slots = [s for s in slots if s.pool == "gpu" and s.state != "quarantined"]
    return [
        t
        for t in types
        if router.pools_for(t) != {"gpu"} or any(has_room(s, t, watchdog) for s in gpu_slots)
    ]
