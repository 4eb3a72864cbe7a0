"""A time and memory budget for converting one document, enforced inside the child.

The supervisor's watchdogs (task deadline, ``--max-memory-per-child``) stay the hard
bounds, but they fail a task as retryable: a document that is merely too expensive
would cost its full deadline once per attempt. The budget fails it once, early, as
non-retryable ``bad_input`` naming the limit (``--doc-convert-timeout-s``,
``--doc-max-memory-bytes``).

How (:class:`Budget`, used as a context manager around one conversion):

- a monitor thread samples the clock and the process's resident memory every
  :data:`SAMPLE_S`; over a limit, it records which;
- code that polls (the PDF converter, page by page, through ``ctx.cancelled``) sees
  :meth:`Budget.cancelled` turn true and stops between pages;
- code that does not poll (docling's office, HTML and mail backends) is interrupted when
  ``interrupt`` is set: the monitor sends SIGALRM to the main thread, whose handler raises
  :class:`BudgetExceeded` there, again every second until the conversion has unwound.
  It is a ``BaseException`` so that a library's ``except Exception`` cannot swallow it.

Raising from a signal handler is how Python itself stops code (``KeyboardInterrupt``); it
is used only around library code that holds nothing of the child's (no pipe writes, no
model cache), which is why the PDF path, which reports progress and loads OCR models,
only polls. Signals reach the main thread only, where the child runs its tasks; in
another thread the budget falls back to polling.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

from morag_worker.errors import BadInput
from morag_worker.processors.settings import ProcessorSettings

#: How often the monitor looks at the clock and the memory: a tenth of a second lets
#: resident memory overshoot by what a converter allocates in that time (tens of MB).
SAMPLE_S = 0.1
#: Interval between repeated interrupts while a conversion has not yet unwound.
REPEAT_S = 1.0


class BudgetExceeded(BaseException):
    """Raised in the main thread when a conversion passed its budget."""


def resident_bytes() -> int:
    """This process's resident memory from ``/proc/self/statm`` (0 where there is none)."""
    try:
        with open("/proc/self/statm", "rb") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class Budget:
    """Time and memory limits for one conversion; see the module docstring."""

    def __init__(self, settings: ProcessorSettings, *, interrupt: bool) -> None:
        self.timeout_s = settings.doc_convert_timeout_s
        self.memory_bytes = settings.doc_max_memory_bytes
        self.interrupt = interrupt and threading.current_thread() is threading.main_thread()
        self.reason = ""
        self._active = False
        self._sent = False  # an interrupt of ours is on its way to the handler
        self._stop = threading.Event()
        self._monitor = threading.Thread(target=self._watch, name="doc-budget", daemon=True)
        self._previous: Any = None

    def cancelled(self, task_cancelled: Callable[[], bool]) -> Callable[[], bool]:
        """A ``ctx.cancelled`` that is also true once the budget is spent."""
        return lambda: bool(self.reason) or task_cancelled()

    def __enter__(self) -> Budget:
        self._started = time.monotonic()
        self._base_bytes = resident_bytes()
        if self.interrupt:
            self._previous = signal.signal(signal.SIGALRM, self._on_alarm)
        self._active = True
        self._monitor.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self._active = False  # first: no interrupt may start after this
        finally:
            self._stop.set()
            self._monitor.join()
            if self.interrupt:
                self._drain()
                # None: a handler installed outside Python; the default is what remains.
                signal.signal(signal.SIGALRM, self._previous or signal.SIG_DFL)
        if kind is None or not self.reason:
            return  # finished (even if just past a limit), or failed on its own
        # Out of time or memory a converter may also fail in its own way (a parser's
        # "allocation failed", a "cancelled"); the budget is the better explanation.
        raise BadInput(self.reason) from None

    def _drain(self) -> None:
        """Let an interrupt already sent run its (now harmless) handler before the
        previous handler returns: it must not take our alarm for its own."""
        for _ in range(1000):
            if not self._sent:
                return
            time.sleep(0.001)  # a call: the interpreter runs pending handlers here

    def _on_alarm(self, signum: int, frame: FrameType | None) -> None:
        if self._sent:
            self._sent = False
            if self._active and self.reason:
                raise BudgetExceeded(self.reason)
        elif callable(self._previous):  # someone else's alarm (a test runner's timer)
            self._previous(signum, frame)

    def _watch(self) -> None:
        next_interrupt = 0.0
        while not self._stop.wait(SAMPLE_S):
            if not self.reason:
                self.reason = self._check()
            now = time.monotonic()
            if self.reason and self.interrupt and self._active and now >= next_interrupt:
                self._sent = True
                signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGALRM)
                next_interrupt = now + REPEAT_S

    def _check(self) -> str:
        elapsed = time.monotonic() - self._started
        if self.timeout_s > 0 and elapsed > self.timeout_s:
            return (
                f"converting it took over {self.timeout_s:,.0f} s, the limit for one document; "
                "stopped and not retried (split the file, or raise --doc-convert-timeout-s)"
            )
        grown = resident_bytes() - self._base_bytes
        if self.memory_bytes > 0 and grown > self.memory_bytes:
            return (
                f"converting it needed over {self.memory_bytes:,} bytes of memory, the limit "
                "for one document; stopped and not retried (split the file, or raise "
                "--doc-max-memory-bytes)"
            )
        return ""
