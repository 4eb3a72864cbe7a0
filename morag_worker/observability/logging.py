"""Log setup for the supervisor, its children and the server (loguru).

Two formats on stderr:

- ``json``: one JSON object per line with ``timestamp`` (ISO-8601, UTC), ``level``,
  ``message``, ``worker_id``, ``task_id``, ``task_type``, ``child`` (``null`` when not
  bound, so every line has the same keys), ``pid``, ``source``, any other bound extras,
  and ``exception`` (the traceback) when there is one. For journald, Loki, Elasticsearch.
- ``text``: readable lines for a terminal.

``auto`` picks ``text`` when stderr is a terminal and ``json`` otherwise (under systemd,
in containers, in pipes).

Secrets never reach the output. Every line is redacted as a whole, message, extras and
traceback alike: API keys (``mrg_`` followed by 16 or more key characters),
``Authorization``/``Bearer`` values, ``api_key=``/``password=`` values, and every value
passed to :func:`register_secret`. Records are redacted too, before any sink sees them.

Libraries that log through the standard ``logging`` module (urllib3, uvicorn) and Python
warnings are routed into the same output.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
import sys
import threading
import traceback
import warnings
from datetime import timezone
from typing import Any, TextIO

from loguru import logger

from morag_worker.errors import ConfigError

#: Keys every JSON line carries, in this order, ``null`` when not bound.
CONTEXT_KEYS = ("worker_id", "task_id", "task_type", "child")

FORMATS = ("auto", "text", "json")

REDACTED = "[REDACTED]"

#: A registered secret shorter than this is ignored: replacing a two-letter string
#: everywhere would wreck the logs, and no real key is that short.
MIN_SECRET_LENGTH = 6

_KEY_PATTERN = re.compile(r"mrg_[A-Za-z0-9_-]{16,}")
_AUTH_PATTERN = re.compile(
    r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?(?:(?:bearer|basic|token)\s+)?)[^\s\"',;}]+"
)
_BEARER_PATTERN = re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=-]+")
_ASSIGNED_PATTERN = re.compile(r"(?i)((?:api[_-]?key|password)[\"']?\s*[:=]\s*[\"']?)[^\s\"'&,;}]+")

_secrets: set[str] = set()
_secrets_lock = threading.Lock()
_secret_pattern: re.Pattern[str] | None = None


def register_secret(value: str | None) -> None:
    """Redact ``value`` from every log line from now on (the API key read from a file
    or the environment, database passwords). Short or empty values are ignored."""
    global _secret_pattern
    if not value or len(value) < MIN_SECRET_LENGTH:
        return
    with _secrets_lock:
        _secrets.add(value)
        ordered = sorted(_secrets, key=len, reverse=True)  # longest first: no partial leftovers
        _secret_pattern = re.compile("|".join(re.escape(s) for s in ordered))


def redact(text: str) -> str:
    """``text`` with every known secret and key-shaped string replaced by ``[REDACTED]``.

    Also for error messages the worker sends elsewhere (to the server, into ``/status``).
    """
    pattern = _secret_pattern
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    text = _KEY_PATTERN.sub(REDACTED, text)
    text = _AUTH_PATTERN.sub(lambda m: m.group(1) + REDACTED, text)
    text = _BEARER_PATTERN.sub(lambda m: m.group(1) + REDACTED, text)
    return _ASSIGNED_PATTERN.sub(lambda m: m.group(1) + REDACTED, text)


def _redact_value(value: Any) -> Any:
    """A copy of a bound extra with its text redacted; non-text values become text
    only when they hold a secret (so numbers stay numbers in JSON)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, int | float | bool) or value is None:
        return value
    text = str(value)
    cleaned = redact(text)
    return value if cleaned == text else cleaned


#: The task this process runs now (a child sets it around each task): lines logged
#: while it runs carry its id and type, from any thread and any library.
_current_task: dict[str, str] = {}


def set_current_task(task_id: str, task_type: str) -> None:
    _current_task.update(task_id=task_id, task_type=task_type)


def clear_current_task() -> None:
    _current_task.clear()


def _patch(record: Any) -> None:
    """Loguru patcher: add the running task to lines that do not name one, and redact
    the message and the extras before any sink formats them."""
    extra = record["extra"]
    for key, value in list(_current_task.items()):
        if extra.get(key) is None:
            extra[key] = value
    record["message"] = redact(record["message"])
    for key, value in list(record["extra"].items()):
        record["extra"][key] = _redact_value(value)


def setup_logging(level: str, fmt: str, **static_extra: Any) -> None:
    """Send every log record to stderr at ``level`` and above, in ``fmt``.

    ``level`` is a level name (``LOG_LEVEL``: DEBUG, INFO, WARNING …); ``fmt`` is
    ``auto``, ``text`` or ``json`` (``--log-format``); both are checked and a bad value is
    a :class:`ConfigError` naming the setting. ``static_extra`` (``worker_id=…``,
    ``child=…``) is bound to every record of this process. Calling it again replaces the
    previous setup; spawned children call it themselves.
    """
    level_name = _check_level(level)
    chosen = _check_format(fmt)
    stream = sys.stderr
    if chosen == "auto":
        chosen = "text" if _is_terminal(stream) else "json"
    logger.remove()
    # diagnose=False: loguru's annotated tracebacks print local variables, keys included.
    if chosen == "json":
        logger.add(_JsonSink(stream), level=level_name, format="{message}", diagnose=False)
    else:
        logger.add(
            _TextSink(stream),
            level=level_name,
            format=_text_format,
            colorize=_is_terminal(stream),
            diagnose=False,
        )
    logger.configure(extra=dict(static_extra), patcher=_patch)
    _route_standard_logging(verbose=level_name in ("TRACE", "DEBUG"))


def _check_level(level: str) -> str:
    name = (level or "").strip().upper()
    name = {"WARN": "WARNING", "FATAL": "CRITICAL"}.get(name, name)
    try:
        logger.level(name)
    except ValueError:
        raise ConfigError(
            f"LOG_LEVEL: unknown level {level!r}; use DEBUG, INFO, WARNING, ERROR or CRITICAL"
        ) from None
    return name


def _check_format(fmt: str) -> str:
    chosen = (fmt or "auto").strip().lower()
    if chosen not in FORMATS:
        raise ConfigError(f"--log-format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    return chosen


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class _JsonSink:
    """Writes one redacted JSON object per record."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def __call__(self, message: Any) -> None:
        line = redact(json.dumps(json_fields(message.record), default=str, ensure_ascii=False))
        self.stream.write(line + "\n")
        self.stream.flush()


def json_fields(record: Any) -> dict[str, Any]:
    """The JSON object for one loguru record (see the module docstring)."""
    extra = record["extra"]
    utc = record["time"].astimezone(timezone.utc)
    fields: dict[str, Any] = {
        "timestamp": utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z",
        "level": record["level"].name,
        "message": record["message"],
    }
    fields.update({key: extra.get(key) for key in CONTEXT_KEYS})
    fields.update({k: v for k, v in sorted(extra.items()) if k not in fields})
    fields["pid"] = record["process"].id
    fields["source"] = f"{record['name']}:{record['function']}:{record['line']}"
    if record["exception"] is not None:
        kind, value, tb = record["exception"]
        fields["exception"] = "".join(traceback.format_exception(kind, value, tb)).rstrip()
    return fields


class _TextSink:
    """Writes each formatted line after redacting it whole (traceback included)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def __call__(self, message: Any) -> None:
        self.stream.write(redact(str(message)))
        self.stream.flush()


def _text_format(record: Any) -> str:
    """``2026-01-27 10:00:00.000 | INFO     | child=gpu0 task_id=… | message``, in UTC."""
    context = " ".join(
        f"{key}={record['extra'][key]}"
        for key in CONTEXT_KEYS
        if record["extra"].get(key) is not None
    )
    record["extra"]["_context"] = f"{context} | " if context else ""
    return (
        "<green>{time:YYYY-MM-DD HH:mm:ss.SSS!UTC}</green> | <level>{level: <8}</level> | "
        "<cyan>{extra[_context]}</cyan><level>{message}</level>\n{exception}"
    )


#: Libraries' own INFO lines (docling's progress, httpx's requests …) are chatter in an
#: operator's log: they are kept out unless the level is DEBUG. Warnings always pass.
_OWN_PREFIX = "morag_worker"


class _InterceptHandler(logging.Handler):
    """Hands standard-library log records to loguru, keeping their level and origin."""

    def __init__(self, verbose: bool) -> None:
        super().__init__()
        self.verbose = verbose

    def emit(self, record: logging.LogRecord) -> None:
        if (
            not self.verbose
            and record.levelno < logging.WARNING
            and not record.name.startswith(_OWN_PREFIX)
        ):
            return
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        # Point loguru's "source" at the caller of the logging module, not at logging.
        frame, depth = inspect.currentframe(), 0
        while frame is not None and (depth == 0 or frame.f_code.co_filename == logging.__file__):
            frame, depth = frame.f_back, depth + 1
        logger.opt(depth=depth, exception=record.exc_info).log(level, record.getMessage())


def _route_standard_logging(verbose: bool) -> None:
    """Every standard-library logger and warning goes to loguru (libraries' INFO lines
    only when ``verbose``). A server started with uvicorn must pass ``log_config=None``,
    or uvicorn installs handlers of its own."""
    logging.basicConfig(handlers=[_InterceptHandler(verbose)], level=0, force=True)
    logging.captureWarnings(True)
    # Deprecation notices from dependencies (pkg_resources, setuptools) say nothing an
    # operator can act on; they stay visible under DEBUG.
    if not verbose:
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=PendingDeprecationWarning)
        warnings.filterwarnings("ignore", message=".*pkg_resources is deprecated.*")
