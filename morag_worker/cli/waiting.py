"""``--wait``: follow a task to its end, showing progress and why it is not moving.

On a terminal the progress is one line redrawn in place (state, stage, a bar, percent,
ETA); elsewhere (a pipe, a CI log) plain lines, one per state or stage change and per
tenth of progress. While the task is queued the server is asked every few seconds
whether any online worker serves the task's type, and when none does the user is told
so instead of watching a task that cannot start.
"""

from __future__ import annotations

import time
from typing import Any, TextIO

from morag_worker.cli.api import TERMINAL, Api, ApiFailure
from morag_worker.cli.output import duration

#: Seconds between status polls: quick enough that a finished task returns at once,
#: slow enough that a long wait costs the server nothing.
POLL_S = 0.25
#: Seconds between "does anything serve this type" checks while the task is queued.
SERVED_CHECK_S = 3.0
BAR_WIDTH = 24


class ProgressView:
    """One task's progress on ``stream`` (a bar on a terminal, lines otherwise)."""

    def __init__(self, stream: TextIO, task_id: str, tty: bool | None = None) -> None:
        self.stream = stream
        self.task_id = task_id
        self.tty = stream.isatty() if tty is None else tty
        self._last_key: tuple[str, str, int] | None = None
        self._first: tuple[float, float] | None = None  # (monotonic, progress) at first sight
        self._drawn = False
        self._last_text = ""

    def update(self, info: dict[str, Any]) -> None:
        progress = info.get("progress")
        stage = info.get("stage") or ""
        if progress is not None and info["state"] == "leased" and self._first is None:
            self._first = (time.monotonic(), float(progress))
        if self.tty:
            self._draw(self._bar_line(info["state"], stage, progress))
            return
        tenth = int((progress or 0) * 10)
        key = (info["state"], stage, tenth)
        if key != self._last_key:
            self._last_key = key
            pct = f" {progress * 100:.0f}%" if progress is not None else ""
            self._line(f"{self.task_id}: {info['state']}{' ' + stage if stage else ''}{pct}")

    def notice(self, text: str) -> None:
        self._line(f"{self.task_id}: {text}")

    def close(self) -> None:
        """End a redrawn line, so what is printed next starts on a line of its own."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False

    def finish(self, info: dict[str, Any]) -> None:
        self.close()
        ran = (
            info["finished_at"] - info["started_at"]
            if info.get("finished_at") and info.get("started_at")
            else None
        )
        end = f"{info['state']} in {duration(ran)}" if ran is not None else info["state"]
        self._line(f"{self.task_id}: {end}")
        error = info.get("last_error")
        if info["state"] != "completed" and error:
            self._line(f"{self.task_id}: {error['type']}: {error['message']}")

    def _eta(self, progress: float) -> str:
        if self._first is None or progress <= self._first[1]:
            return "ETA --"
        started, p0 = self._first
        rate = (progress - p0) / max(1e-6, time.monotonic() - started)
        return f"ETA {duration((1.0 - progress) / rate)}"

    def _bar_line(self, state: str, stage: str, progress: float | None) -> str:
        head = f"{self.task_id}  {state:<9} {stage:<12}"
        if progress is None:
            return head
        filled = int(progress * BAR_WIDTH)
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        return f"{head} [{bar}] {progress * 100:3.0f}%  {self._eta(progress)}"

    def _draw(self, text: str) -> None:
        if self._drawn and text == self._last_text:
            return
        self._last_text = text
        self.stream.write("\r\x1b[2K" + text)
        self.stream.flush()
        self._drawn = True

    def _line(self, text: str) -> None:
        if self._drawn:
            self.stream.write("\r\x1b[2K")
            self._drawn = False
        self.stream.write(text + "\n")
        self.stream.flush()


def online_workers(api: Api, task_type: str) -> int | None:
    """Online workers serving ``task_type`` for this key; None when the server cannot
    say (an older server without ``/api/v1/task-types``)."""
    try:
        types = api.get("/api/v1/task-types")["task_types"]
    except ApiFailure as exc:
        if exc.status == 404:
            return None
        raise
    found = next((t for t in types if t["task_type"] == task_type), None)
    return None if found is None else int(found["workers_online"])


class _ServedWatch:
    """Tells the user when nothing serves the task's type, and when that changes."""

    def __init__(self, api: Api, view: ProgressView) -> None:
        self.api = api
        self.view = view
        self.next_check = 0.0
        self.unserved = False

    def check(self, info: dict[str, Any]) -> None:
        if info["state"] != "queued" or time.monotonic() < self.next_check:
            return
        self.next_check = time.monotonic() + SERVED_CHECK_S
        online = online_workers(self.api, info["task_type"])
        if online == 0 and not self.unserved:
            self.view.notice(
                f"no online worker serves `{info['task_type']}`; the task waits until one "
                "does (start a morag-supervisor whose pools take this type; see "
                "'morag workers')"
            )
        elif online and self.unserved:
            self.view.notice(f"a worker serving `{info['task_type']}` is online")
        self.unserved = online == 0


def watch(api: Api, task_id: str, timeout_s: float, stream: TextIO) -> dict[str, Any]:
    """Poll ``task_id`` until it ends, showing progress on ``stream``; its last info.

    Raises ApiFailure when ``timeout_s`` passes first (the task keeps running).
    """
    view = ProgressView(stream, task_id)
    served = _ServedWatch(api, view)
    deadline = time.monotonic() + timeout_s
    while True:
        info: dict[str, Any] = api.get(f"/api/v1/tasks/{task_id}")
        if info["state"] in TERMINAL:
            view.finish(info)
            return info
        view.update(info)
        served.check(info)
        if time.monotonic() > deadline:
            view.close()
            raise ApiFailure(
                f"task {task_id} still {info['state']} after {timeout_s:.0f} s (--timeout); "
                f"it keeps going: 'morag status {task_id}'"
            )
        time.sleep(POLL_S)
