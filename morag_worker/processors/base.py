"""The processor interface and the registry that maps task types onto processors.

A processor turns one task's inputs into a :class:`~morag_worker.protocol.TaskResult`.
Processors run inside a supervisor's child process; they never talk to the server.
They report failures by raising :class:`~morag_worker.errors.TaskFailure` (or a subclass);
any other exception is reported as a retryable internal error.

The registry holds ``"module:Class"`` strings so that importing it stays cheap: a
processor's heavy libraries are imported only in the child that first runs its type.
Plugins add processors with :func:`register` (``--plugin MODULE`` on the supervisor).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from morag_worker.errors import BadInput, ConfigError
from morag_worker.models.cache import ModelCache
from morag_worker.options import parse_bool
from morag_worker.processors.settings import ProcessorSettings
from morag_worker.protocol import TaskResult


@dataclass(frozen=True)
class TaskContext:
    """Everything a processor may use for one task.

    ``inputs`` are the task's downloaded files (verified against their sha256), in the
    order they were uploaded. ``work_dir`` is private to the task and removed after
    the result is uploaded; it may not exist yet (most tasks write nothing, and not
    making it saves file-system work), so create it before writing into it.
    ``report(progress, stage)`` sends progress (0..1) to the supervisor;
    ``cancelled()`` turns true when the task was cancelled or its lease was lost, and a
    long processor should check it between stages.
    """

    task_id: str
    task_type: str
    parameters: Mapping[str, Any]
    inputs: list[Path]
    input_names: list[str]
    work_dir: Path
    device: str
    models: ModelCache
    settings: ProcessorSettings
    report: Callable[[float, str], None] = field(default=lambda _p, _s: None)
    cancelled: Callable[[], bool] = field(default=lambda: False)

    @classmethod
    def local(
        cls,
        task_type: str,
        inputs: Sequence[Path] = (),
        *,
        parameters: Mapping[str, Any] | None = None,
        settings: ProcessorSettings | None = None,
        models: ModelCache | None = None,
        work_dir: Path | None = None,
        device: str = "cpu",
        task_id: str = "local",
        cancelled: Callable[[], bool] | None = None,
    ) -> TaskContext:
        """A context for running a processor on local files, outside a supervisor (in
        benchmarks, tests and scripts): inputs keep their file names, and the work dir is
        the first input's folder unless given."""
        paths = list(inputs)
        return cls(
            task_id=task_id,
            task_type=task_type,
            parameters=dict(parameters or {}),
            inputs=paths,
            input_names=[p.name for p in paths],
            work_dir=work_dir or (paths[0].parent if paths else Path.cwd()),
            device=device,
            models=models or ModelCache(),
            settings=settings or ProcessorSettings(),
            cancelled=cancelled or (lambda: False),
        )


def bool_parameter(parameters: Mapping[str, Any], name: str, default: bool = False) -> bool:
    """A yes/no task parameter: a JSON boolean or a word (true/false, yes/no, on/off, 1/0).

    Raises BadInput for any other value, so that a typo is not silently ignored.
    """
    try:
        return parse_bool(parameters.get(name, default), f"parameter {name}")
    except ValueError as exc:
        raise BadInput(str(exc)) from None


class Processor(Protocol):
    """What every processor provides. Instances live for the life of their child."""

    task_type: ClassVar[str]

    def process(self, ctx: TaskContext) -> TaskResult: ...


_REGISTRY: dict[str, str] = {
    "noop": "morag_worker.processors.noop:NoopProcessor",
    "document": "morag_worker.processors.document:DocumentProcessor",
    "image": "morag_worker.processors.image:ImageProcessor",
    "web": "morag_worker.processors.web:WebProcessor",
    "audio": "morag_worker.processors.audio:AudioProcessor",
    "video": "morag_worker.processors.video:VideoProcessor",
    "youtube": "morag_worker.processors.youtube:YoutubeProcessor",
}


def register(task_type: str, target: str | type) -> None:
    """Register a processor for ``task_type``: a class or a ``"module:Class"`` string."""
    if isinstance(target, type):
        target = f"{target.__module__}:{target.__qualname__}"
    _REGISTRY[task_type] = target


def registered_types() -> list[str]:
    return sorted(_REGISTRY)


def load_processor(task_type: str) -> Processor:
    """Import and instantiate the processor for ``task_type``."""
    try:
        target = _REGISTRY[task_type]
    except KeyError:
        raise ConfigError(
            f"no processor for task type {task_type!r}; known: {', '.join(registered_types())}"
        ) from None
    module_name, _, class_name = target.partition(":")
    module = importlib.import_module(module_name)
    cls = getattr(module, class_name)
    instance: Processor = cls()
    return instance


def load_plugins(modules: list[str]) -> None:
    """Import plugin modules; each registers its processors with :func:`register`."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(f"--plugin {name}: cannot import it ({exc})") from exc
