"""The small frozen messages of the supervisor: across the child boundary, and from its
threads to the main loop.

Supervisor → child: a :class:`ChildSpec` at start, then :class:`TaskMessage` items on the
child's pipe (``None`` asks it to exit). Child → supervisor: events on the same pipe
(:data:`ChildEvent`). Small results travel inline with :class:`TaskFinished`; large ones
never do: the child writes ``result.json`` into the task's work directory and the event
carries its path (:func:`load_result` reads it back, within a size limit).

Threads → main loop: :data:`InboxItem` values through the :class:`~.inbox.Inbox`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from morag_worker.protocol import TaskSpec
from morag_worker.settings import ProcessorSettings


@dataclass(frozen=True)
class ChildSpec:
    name: str  #: "gpu0", "gpu0b", "cpu1" … stable per slot
    generation: int  #: increases on every restart of the slot
    device: str  #: "cuda" or "cpu"
    env: dict[str, str]
    cpus: frozenset[int]
    settings: ProcessorSettings
    plugins: tuple[str, ...] = ()
    preload: tuple[str, ...] = ()
    #: Byte budget of the child's model cache; 0 = unbounded.
    model_budget_bytes: int = 0
    log_level: str = "INFO"
    log_format: str = "auto"
    worker_id: str = ""


@dataclass(frozen=True)
class TaskMessage:
    task_id: str
    task_type: str
    parameters: dict[str, Any]
    inputs: tuple[str, ...]
    input_names: tuple[str, ...]
    work_dir: str
    attempt: int
    #: Per-child sequence number; the supervisor cancels a task by writing it into the
    #: child's shared cancel value, so a late cancel can never hit the next task.
    seq: int


@dataclass(frozen=True)
class ChildReady:
    child: str
    generation: int
    pid: int
    models: tuple[str, ...] = ()
    #: Bytes the child's model cache accounts for (the models' estimated footprints).
    cache_bytes: int = 0


@dataclass(frozen=True)
class ChildFailed:
    """The child could not boot (bad plugin, preload failure); it exits right after."""

    child: str
    generation: int
    message: str


@dataclass(frozen=True)
class TaskStarted:
    child: str
    task_id: str
    started_at: float  #: time.monotonic() in the child (shared clock on Linux)


@dataclass(frozen=True)
class TaskProgress:
    child: str
    task_id: str
    progress: float
    stage: str


@dataclass(frozen=True)
class TaskFinished:
    child: str
    task_id: str
    ok: bool
    #: The result as JSON when small; larger ones are in ``result_path`` instead.
    result_json: str = ""
    result_path: str = ""
    error: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    models: tuple[str, ...] = ()
    cache_hits: int = 0
    cache_misses: int = 0
    cache_load_s: float = 0.0
    cache_bytes: int = 0
    #: The child should be replaced after this task: "cuda_oom" or "cuda_fatal".
    recycle: str = ""
    #: With "cuda_fatal": the error points at the GPU itself (ECC, lost device), so the
    #: supervisor quarantines the GPU instead of counting a crash.
    device_fault: bool = False


ChildEvent = ChildReady | ChildFailed | TaskStarted | TaskProgress | TaskFinished


# ---- thread → main loop ---------------------------------------------------------------------


@dataclass(frozen=True)
class Leased:
    """The leaser added this task to the lease book."""

    task_id: str


@dataclass(frozen=True)
class Downloaded:
    """The task's inputs are in its work dir (``error`` empty), or could not be fetched.
    ``infra``: the failure was this worker's own (disk full, work dir not writable, out
    of file handles), not the task's: it goes back unattempted."""

    task_id: str
    error: str = ""
    infra: bool = False
    #: The task as the download completed it (input names, a URL read from the file),
    #: when the link learned more than the lease said.
    spec: TaskSpec | None = None


@dataclass(frozen=True)
class Uploaded:
    """The server answered for the task's result: its new state, ``lease_lost``,
    ``refused`` or ``upload_failed``."""

    task_id: str
    outcome: str
    #: The server's explanation when it refused the result.
    message: str = ""


@dataclass(frozen=True)
class LeaseLost:
    """The server no longer knows this lease (expired, re-leased): drop the task."""

    task_id: str


@dataclass(frozen=True)
class LeaseCancelled:
    """The task's owner cancelled it: stop it and drop it."""

    task_id: str


@dataclass(frozen=True)
class Unreadable:
    """A leased task this worker could not read (its JSON does not fit the protocol).
    Reported as a non-retryable failure when its id and token could be read."""

    task_id: str
    lease_token: str
    message: str


InboxItem = Leased | Downloaded | Uploaded | LeaseLost | LeaseCancelled | Unreadable


def load_result(path: str, max_bytes: int) -> dict[str, Any]:
    """Read back a result the child wrote, refusing one over ``max_bytes`` unread."""
    size = os.stat(path).st_size
    if max_bytes and size > max_bytes:
        raise ResultTooLarge(size, max_bytes)
    data: dict[str, Any] = json.loads(Path(path).read_text())
    return data


class ResultTooLarge(Exception):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"the result is {size} bytes, over the limit of {limit} bytes "
            "(--max-result-bytes on the supervisor; the server's result limit must allow it too)"
        )
