"""The parameters each built-in task type accepts, and the check the server runs on them.

One table for both halves: the server refuses a task whose parameters it does not know
(422 naming them and listing the accepted ones), ``GET /api/v1/task-types`` publishes the
table, and ``morag submit --param`` checks against what the server publishes before it
uploads anything. Processors still validate values themselves (a plugin or an old server
may send anything); bounds here are the processors' own.

Plugin types (``morag-server --extra-task-types``) have no entry: the server cannot know
their parameters, so it passes any through and the plugin validates them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from morag_worker.protocol import URL_TASK_TYPES, TaskParameter, TaskTypeInfo

_P = TaskParameter

_EMBED = _P(
    name="embed",
    type="boolean",
    description="embed the chunks on the worker (its --embedding-model) instead of the server",
)
_URL = _P(name="url", type="string", description="the http(s) URL to fetch", required=True)
_LANGUAGE = _P(
    name="language",
    type="string",
    description="spoken language as an ISO code (en, de); default: detected",
)
_SPEECH = [
    _LANGUAGE,
    _P(
        name="num_speakers",
        type="integer",
        description="speakers to label; default: estimated",
        minimum=1,
        maximum=50,
    ),
    _P(name="diarize", type="boolean", description="label speakers (default true)"),
]

#: Accepted parameters by built-in task type (``embed`` is added to every one).
TASK_PARAMETERS: dict[str, list[TaskParameter]] = {
    "audio": _SPEECH,
    "video": _SPEECH,
    "youtube": [
        _URL,
        *_SPEECH,
        _P(
            name="captions",
            type="boolean",
            description="use the video's captions when present instead of transcribing "
            "(default true)",
        ),
    ],
    "document": [],
    "image": [],
    "web": [
        _URL,
        _P(
            name="keep_comments",
            type="boolean",
            description="keep the page's reader comments, marked, in a final ## Comments "
            "section (default false: left out with the other page furniture)",
        ),
    ],
    "noop": [
        _P(
            name="sleep_s",
            type="number",
            description="seconds to hold the task in its child (drain and cancel checks)",
            minimum=0,
            maximum=3600,
        ),
        _P(name="echo", type="string", description="the result's content (default ok)"),
    ],
}


def parameters_of(task_type: str) -> list[TaskParameter] | None:
    """The parameters ``task_type`` accepts, sorted by name; None for a plugin type."""
    own = TASK_PARAMETERS.get(task_type)
    if own is None:
        return None
    return sorted([*own, _EMBED], key=lambda p: p.name)


def input_kind(task_type: str) -> str:
    if task_type in URL_TASK_TYPES:
        return "url"
    return "none" if task_type == "noop" else "files"


def _type_ok(spec: TaskParameter, value: Any) -> bool:
    if spec.type == "boolean":
        return isinstance(value, bool)
    if spec.type == "string":
        return isinstance(value, str)
    if isinstance(value, bool):  # a bool is an int in Python, never a number on the wire
        return False
    if spec.type == "integer":
        return isinstance(value, int)
    return isinstance(value, int | float)


def _value_problem(spec: TaskParameter, value: Any) -> str | None:
    if not _type_ok(spec, value):
        return f"expected {spec.type}, got {value!r}"
    if spec.minimum is not None and value < spec.minimum:
        return f"must be at least {spec.minimum:g}, got {value!r}"
    if spec.maximum is not None and value > spec.maximum:
        return f"must be at most {spec.maximum:g}, got {value!r}"
    return None


def parameter_problem(task_type: str, parameters: Mapping[str, Any]) -> tuple[str, str] | None:
    """The first problem with ``parameters`` for ``task_type`` as (field, message), or None.

    Unknown names come first, all of them in one message with the accepted ones, so that
    a typo is fixed in one round trip.
    """
    accepted = parameters_of(task_type)
    if accepted is None:
        return None
    by_name = {p.name: p for p in accepted}
    unknown = sorted(set(parameters) - set(by_name))
    if unknown:
        names = ", ".join(unknown)
        offer = ", ".join(by_name) or "none"
        word = "parameter" if len(unknown) == 1 else "parameters"
        return (
            f"parameters.{unknown[0]}",
            f"unknown {word} {names} for task type {task_type}; {task_type} accepts: {offer}",
        )
    for name, value in parameters.items():
        problem = _value_problem(by_name[name], value)
        if problem:
            return f"parameters.{name}", problem
    return None


def describe(task_type: str, workers_online: int, capacity_online: int) -> TaskTypeInfo:
    return TaskTypeInfo(
        task_type=task_type,
        input=input_kind(task_type),  # type: ignore[arg-type]
        parameters=parameters_of(task_type),
        workers_online=workers_online,
        capacity_online=capacity_online,
    )
