"""The small frozen messages that cross the supervisor/child process boundary.

Supervisor → child: a :class:`ChildSpec` at start, then :class:`TaskMessage` items on the
child's pipe (``None`` asks it to exit). Child → supervisor: events on the same pipe.
Small results travel inline with :class:`TaskFinished`; large ones never do: the child
writes ``result.json`` into the task's work directory and the event carries its path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from morag_worker.processors.settings import ProcessorSettings


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
