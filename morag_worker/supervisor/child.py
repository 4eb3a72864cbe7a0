"""The child process: pin the device, load plugins and models, then run tasks.

Started with the ``spawn`` context. Order matters and is the reason this module imports
nothing heavy at the top: the environment (``CUDA_VISIBLE_DEVICES``, thread counts) and
CPU affinity are fixed first, and only then do processors import torch or numpy.

The child never talks to the server. It reads :class:`TaskMessage` items from its pipe
and sends events back on the same pipe; a result too large to travel there is written
to ``result.json`` in the task's work directory. It stamps ``heartbeat`` whenever it is
idle, so the supervisor can tell a silent idle child from a busy one.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from morag_worker.observability.sdnotify import NOTIFY_VARIABLES
from morag_worker.supervisor.exitcodes import EXIT_BOOT_FAILED, EXIT_OK, EXIT_RECYCLE
from morag_worker.supervisor.messages import (
    ChildFailed,
    ChildReady,
    ChildSpec,
    TaskFinished,
    TaskMessage,
    TaskProgress,
    TaskStarted,
)

#: Results up to this size travel inline with the "finished" event; larger ones are
#: written to the work dir, keeping big transcripts out of the pipe.
INLINE_RESULT_BYTES = 256 * 1024
#: Progress events are throttled to this interval; heartbeats carry only the latest.
PROGRESS_INTERVAL_S = 0.5
#: How long the idle loop blocks on the task queue between heartbeat stamps.
IDLE_STAMP_S = 0.5
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this child when the supervisor dies, even by ``kill -9``,
    so no orphan keeps holding a GPU."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass  # not Linux/glibc: the idle loop's parent check still ends the child


def _pin(spec: ChildSpec) -> None:
    # systemd's notify socket and watchdog are the supervisor's alone; a child (or its
    # ffmpeg) that inherited them could send READY=1 or keep a hung unit "alive".
    for name in NOTIFY_VARIABLES:
        os.environ.pop(name, None)
    os.environ.update(spec.env)
    if spec.cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, spec.cpus)
    # Ctrl-C reaches the whole process group; the supervisor decides how children stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class ChildRuntime:
    def __init__(self, spec: ChildSpec, conn: Any, heartbeat: Any, cancel: Any) -> None:
        from morag_worker.models.cache import ModelCache

        self.spec = spec
        self.conn = conn
        # Progress may be reported from a processor's own threads: one send at a time.
        self._send_lock = threading.Lock()
        self.heartbeat = heartbeat
        self.cancel = cancel
        self.models = ModelCache(budget_bytes=spec.model_budget_bytes)
        self.processors: dict[str, Any] = {}
        self.parent = os.getppid()

    def boot(self) -> None:
        from morag_worker.processors.base import load_plugins

        load_plugins(list(self.spec.plugins))
        for item in self.spec.preload:
            self._preload(item)

    def _preload(self, item: str) -> None:
        kind, _, name = item.partition(":")
        if kind == "whisper":
            from morag_worker.models.whisper import preload

            preload(item, self.models, self.spec.settings, self.spec.device)
        elif kind == "embedding":
            from morag_worker.processors.embedding import cached_embedder

            name = name or self.spec.settings.embedding_model
            cached_embedder(self.models, name, self.spec.device)
        elif kind == "resemblyzer":
            from morag_worker.processors.diarize import preload as preload_encoder

            preload_encoder(self.models, self.spec.device)
        else:
            raise ValueError(
                f"--preload {item!r}: unknown model kind {kind!r}; "
                "use whisper:<name>, embedding:<name> or resemblyzer"
            )

    def send(self, event: Any) -> None:
        """Send an event to the supervisor (synchronously, so it is out before an exit)."""
        with self._send_lock:
            self.conn.send(event)

    def serve(self) -> int:
        while True:
            self.heartbeat.value = time.monotonic()
            if os.getppid() != self.parent:
                return EXIT_OK
            try:
                if not self.conn.poll(IDLE_STAMP_S):
                    continue
                message = self.conn.recv()
            except (EOFError, OSError):
                return EXIT_OK  # the supervisor is gone
            if message is None:
                return EXIT_OK
            finished = self.run(message)
            self.send(finished)
            if finished.recycle:
                return EXIT_RECYCLE

    def run(self, message: TaskMessage) -> TaskFinished:
        """Run one task; every log line written meanwhile (libraries' included, from any
        thread) carries its id and type."""
        from morag_worker.observability.logging import clear_current_task, set_current_task

        set_current_task(message.task_id, message.task_type)
        try:
            return self._run(message)
        finally:
            clear_current_task()

    def _run(self, message: TaskMessage) -> TaskFinished:
        from morag_worker.errors import TaskFailure

        started = time.monotonic()
        self.send(TaskStarted(self.spec.name, message.task_id, started))
        recycle, device_fault = "", False
        result_json = result_path = ""
        try:
            result_json = self._process(message)
            if len(result_json) > INLINE_RESULT_BYTES:
                path = Path(message.work_dir) / "result.json"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(result_json)
                result_json, result_path = "", str(path)
            ok, error = True, {}
        except TaskFailure as failure:
            ok = False
            error = {
                "type": failure.error_type,
                "message": failure.message,
                "retryable": failure.retryable,
            }
        except Exception as exc:  # anything else: reported, the child keeps serving
            ok = False
            error, recycle, device_fault = self._unexpected(message, exc)
        stats = self.models.stats
        return TaskFinished(
            child=self.spec.name,
            task_id=message.task_id,
            ok=ok,
            result_json=result_json,
            result_path=result_path,
            error=error,
            timings={"process_s": time.monotonic() - started},
            models=tuple(self.models.contents()),
            cache_hits=stats.hits,
            cache_misses=stats.misses,
            cache_load_s=stats.load_seconds,
            cache_bytes=self.models.used_bytes(),
            recycle=recycle,
            device_fault=device_fault,
        )

    def _unexpected(self, message: TaskMessage, exc: Exception) -> tuple[dict[str, Any], str, bool]:
        """(error, recycle reason, device fault) for an exception a processor raised."""
        from loguru import logger

        from morag_worker.supervisor.cuda_errors import classify_cuda_error, is_device_fault
        from morag_worker.supervisor.disk import describe_infra, is_infra_error

        if is_infra_error(exc):  # this worker's disk or file handles, not the task
            logger.error(
                "task hit a worker infrastructure failure: {}", exc, task_id=message.task_id
            )
            return (
                {
                    "type": "worker_infrastructure",
                    "message": describe_infra(exc),
                    "retryable": True,
                },
                "",
                False,
            )
        kind = classify_cuda_error(exc)
        logger.opt(exception=exc).error(
            "task raised {}", type(exc).__name__, task_id=message.task_id
        )
        text = f"{type(exc).__name__}: {exc}"[:4000]
        if kind == "oom":
            return {"type": "cuda_oom", "message": text, "retryable": True}, "cuda_oom", False
        if kind == "fatal":
            error = {"type": "cuda_fatal", "message": text, "retryable": True}
            return error, "cuda_fatal", is_device_fault(exc)
        detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return {"type": "internal", "message": detail[:4000], "retryable": True}, "", False

    def _process(self, message: TaskMessage) -> str:
        from morag_worker.processors.base import TaskContext, load_processor

        processor = self.processors.get(message.task_type)
        if processor is None:
            processor = self.processors[message.task_type] = load_processor(message.task_type)
        last = [0.0]

        def report(progress: float, stage: str) -> None:
            now = time.monotonic()
            if now - last[0] >= PROGRESS_INTERVAL_S:
                last[0] = now
                self.send(
                    TaskProgress(
                        self.spec.name, message.task_id, max(0.0, min(1.0, progress)), stage[:64]
                    )
                )

        work_dir = Path(message.work_dir)
        ctx = TaskContext(
            task_id=message.task_id,
            task_type=message.task_type,
            parameters=message.parameters,
            inputs=[Path(p) for p in message.inputs],
            input_names=list(message.input_names),
            work_dir=work_dir,
            device=self.spec.device,
            models=self.models,
            settings=self.spec.settings,
            report=report,
            cancelled=lambda: self.cancel.value == message.seq,
        )
        result = processor.process(ctx)
        if message.parameters.get("embed"):
            from morag_worker.processors.embedding import maybe_embed

            result = maybe_embed(ctx, result)
        return _serialise(message.task_type, result)


def _serialise(task_type: str, result: Any) -> str:
    """The result as JSON; a processor that returns something else, or values JSON
    cannot hold, fails the task for good (it would fail the same way again)."""
    from morag_worker.errors import TaskFailure
    from morag_worker.protocol import TaskResult

    if not isinstance(result, TaskResult):
        raise TaskFailure(
            "bad_result",
            f"the {task_type} processor returned {type(result).__name__}, not a TaskResult",
            retryable=False,
        )
    try:
        return result.model_dump_json()
    except (ValueError, TypeError) as exc:  # PydanticSerializationError is a ValueError
        raise TaskFailure(
            "bad_result",
            f"the {task_type} processor returned a result that cannot be serialised: {exc}",
            retryable=False,
        ) from None


def child_main(spec: ChildSpec, conn: Any, heartbeat: Any, cancel: Any) -> None:
    """Entry point of a spawned child (the target of ``multiprocessing.Process``)."""
    _die_with_parent()
    _pin(spec)
    from morag_worker.observability.logging import setup_logging

    setup_logging(spec.log_level, spec.log_format, worker_id=spec.worker_id, child=spec.name)
    runtime = ChildRuntime(spec, conn, heartbeat, cancel)
    try:
        runtime.boot()
    except Exception as exc:
        runtime.send(ChildFailed(spec.name, spec.generation, f"{type(exc).__name__}: {exc}"))
        sys.exit(EXIT_BOOT_FAILED)
    models = tuple(runtime.models.contents())
    runtime.send(
        ChildReady(spec.name, spec.generation, os.getpid(), models, runtime.models.used_bytes())
    )
    code = runtime.serve()
    runtime.models.close()
    sys.exit(code)
