"""The demo's progress while its tasks run, and its table once they are done.

Progress is one redrawn line on a terminal (done, running, queued, elapsed) and one line
per finished task elsewhere. The table separates the time a task waited in the queue
from the time a child spent processing it, and shows the first line of real content:
not the heading a processor puts before a file's text, nor the timestamps and speaker
markup of a transcript line.
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass
from typing import Any, TextIO

from morag_worker.cli.api import TERMINAL, Api, ApiFailure
from morag_worker.cli.output import clip, table

#: Seconds between progress polls: one list call for every task.
POLL_S = 0.5
_MARKUP = re.compile(r"\*\*|__|`")
_TIMESTAMP = re.compile(r"^\[\d[\d:.]*\s*[–-]\s*\d[\d:.]*\]\s*:?\s*")


@dataclass(frozen=True)
class Submitted:
    name: str  # what the table calls it
    task_type: str
    task_id: str
    source: str  # the file name or URL the processor saw


def excerpt(content: str, source: str, width: int = 60) -> str:
    """The first line of real content: the first spoken line of a transcript (after the
    media's metadata), else the first line that is not blank, a comment or a heading
    that only repeats the file's name; without timestamps and emphasis."""
    base = source.rsplit("/", 1)[-1]
    lines = [_MARKUP.sub("", raw).strip() for raw in content.splitlines()]
    spoken = next((ln for ln in lines if _TIMESTAMP.match(ln)), None)
    if spoken is not None:
        return clip(_TIMESTAMP.sub("", spoken), width)
    for line in lines:
        if not line or line.startswith("<!--"):
            continue
        if line.startswith("#") and line.lstrip("#").strip() in (source, base):
            continue
        return clip(line.lstrip("#").strip(), width)
    return ""


def follow(api: Api, submitted: list[Submitted], timeout_s: float, out: TextIO) -> dict[str, Any]:
    """Poll until every task ended (or ``timeout_s``), reporting progress; the last info
    of each task by id."""
    ids = {s.task_id: s for s in submitted}
    infos: dict[str, Any] = {}
    reported: set[str] = set()
    tty = out.isatty()
    started = time.monotonic()
    while True:
        page = api.get("/api/v1/tasks", {"limit": max(len(ids), 1)})["tasks"]
        infos.update({t["task_id"]: t for t in page if t["task_id"] in ids})
        done = [i for i, t in infos.items() if t["state"] in TERMINAL]
        for task_id in done:
            if task_id not in reported and not tty:
                info = infos[task_id]
                print(f"  {info['state']:<9} {ids[task_id].name}", file=out, flush=True)
            reported.add(task_id)
        if tty:
            running = sum(1 for t in infos.values() if t["state"] == "leased")
            out.write(
                f"\r\x1b[2K  done {len(done)}/{len(ids)}, running {running}, "
                f"queued {len(ids) - len(done) - running}, {time.monotonic() - started:.0f} s"
            )
            out.flush()
        if len(done) == len(ids) or time.monotonic() - started > timeout_s:
            if tty:
                out.write("\n")
            return infos
        time.sleep(POLL_S)


def _times(info: dict[str, Any]) -> tuple[str, str]:
    """(seconds queued, seconds processing) of a task, as table cells."""
    started, finished = info.get("started_at"), info.get("finished_at")
    queued = f"{started - info['created_at']:.2f}" if started else "-"
    process_s = (info.get("timings") or {}).get("process_s")
    if process_s is None and started and finished:
        process_s = finished - started
    if process_s is None:
        return queued, "-"
    return queued, f"{process_s:.3f}" if process_s < 1 else f"{process_s:.2f}"


def _detail(api: Api, item: Submitted, info: dict[str, Any] | None) -> str:
    if info is None:
        return "no answer from the server about this task"
    if info["state"] == "completed":
        try:
            content = api.get(f"/api/v1/tasks/{item.task_id}/result")["result"]["content"]
        except ApiFailure as exc:
            return str(exc)
        return excerpt(content, item.source)
    error = info.get("last_error")
    return clip(f"{error['type']}: {error['message']}", 70) if error else "still " + info["state"]


def report(api: Api, submitted: list[Submitted], infos: dict[str, Any]) -> bool:
    """Print the table; True when every task completed."""
    rows = []
    for item in submitted:
        info = infos.get(item.task_id)
        queued, processing = _times(info) if info else ("-", "-")
        state = info["state"] if info else "unknown"
        rows.append(
            [item.name, item.task_type, state, queued, processing, _detail(api, item, info)]
        )
    headers = ["sample", "type", "state", "queued s", "processing s", "first line of content"]
    print("\n" + table(headers, rows))
    sys.stdout.flush()
    return all((infos.get(s.task_id) or {}).get("state") == "completed" for s in submitted)
