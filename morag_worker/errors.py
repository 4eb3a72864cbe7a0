"""Errors shared by the supervisor, its children and the processors.

A processor raises :class:`TaskFailure` to report a failure it understands; its
``retryable`` flag decides whether the server tries the task again. Anything else
that escapes a processor is reported as a retryable ``internal`` error.
"""

from __future__ import annotations


class TaskFailure(Exception):
    """A task failed for a reason the processor can name.

    ``error_type`` is a short machine-readable word (``bad_input``, ``model_missing``,
    ``timeout``, ``memory``, ``crash`` …); ``message`` tells a person what was wrong and
    what to do about it.
    """

    def __init__(self, error_type: str, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.retryable = retryable


class BadInput(TaskFailure):
    """The input cannot be processed as given; retrying would fail the same way."""

    def __init__(self, message: str) -> None:
        super().__init__("bad_input", message, retryable=False)


class ModelMissing(TaskFailure):
    """A model the task needs is not installed on this worker host."""

    def __init__(self, message: str) -> None:
        super().__init__("model_missing", message, retryable=False)


class Cancelled(TaskFailure):
    """The task was cancelled or its lease was lost while it ran."""

    def __init__(self, message: str = "task cancelled") -> None:
        super().__init__("cancelled", message, retryable=False)


class ConfigError(Exception):
    """A setting is invalid; the message names the setting and what is allowed."""


class FatalStartup(Exception):
    """The supervisor cannot start (key refused, worker id taken, the server does not
    speak the configured protocol); exit code 2."""
