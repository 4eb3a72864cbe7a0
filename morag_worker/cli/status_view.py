"""``morag status``: one task as a person reads it (local times, stage, progress, error)."""

from __future__ import annotations

import time
from typing import Any

from morag_worker.cli.output import duration, local_time, size


def _what(info: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [
        (
            f"file {i + 1}" if len(info["input_files"]) > 1 else "file",
            f"{f['name']} ({size(f['size'])})",
        )
        for i, f in enumerate(info["input_files"])
    ]
    params = dict(info["parameters"])
    if "url" in params:
        rows.append(("url", str(params.pop("url"))))
    if params:
        rows.append(("parameters", ", ".join(f"{k}={v!r}" for k, v in sorted(params.items()))))
    return rows


def _state(info: dict[str, Any]) -> str:
    state = info["state"]
    attempts = f"attempt {info['attempt']} of {info['max_attempts']}"
    if state == "queued":
        if not info["attempt"]:
            return "queued (waiting for a worker)"
        return f"queued to retry (attempt {info['attempt'] + 1} of {info['max_attempts']} next)"
    if state == "leased":
        stage = info.get("stage") or "starting"
        pct = f" {info['progress'] * 100:.0f}%" if info.get("progress") is not None else ""
        return f"running: {stage}{pct} ({attempts}, worker {info['worker_id']})"
    return f"{state} ({attempts})" if state != "cancelled" else state


def _times(info: dict[str, Any], now: float) -> list[tuple[str, str]]:
    created, started, finished = info["created_at"], info["started_at"], info["finished_at"]
    rows = [("created", f"{local_time(created)} ({duration(now - created)} ago)")]
    if started is not None:
        waited = duration(started - created)
        rows.append(("started", f"{local_time(started)} (after {waited} in the queue)"))
    if finished is not None:
        ran = f" (ran {duration(finished - started)})" if started is not None else ""
        rows.append(("finished", local_time(finished) + ran))
    elif started is not None and info["state"] == "leased":
        rows.append(("running for", duration(now - started)))
    if info.get("indexed_at"):
        rows.append(("searchable", local_time(info["indexed_at"])))
    return rows


def status_lines(info: dict[str, Any], now: float | None = None) -> list[str]:
    """The task's fields as aligned ``name  value`` lines."""
    now = time.time() if now is None else now
    rows = [("task", info["task_id"]), ("type", info["task_type"]), ("state", _state(info))]
    rows += _what(info) + _times(info, now)
    timings = info.get("timings") or {}
    if timings:
        rows.append(("timings", ", ".join(f"{k} {v:.2f}" for k, v in sorted(timings.items()))))
    if info.get("priority"):
        rows.append(("priority", str(info["priority"])))
    error = info.get("last_error")
    if error:
        final = info["state"] in ("failed", "dead")
        note = "" if final else " (an earlier attempt)"
        rows.append(
            ("error" if final else "last error", f"{error['type']}: {error['message']}{note}")
        )
    width = max(len(name) for name, _ in rows)
    return [f"{name:<{width}}  {value}" for name, value in rows]
