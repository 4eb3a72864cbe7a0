"""``morag submit|status|result|cancel|tasks``: a user's tasks."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from morag_worker.cli.api import TERMINAL, Api, ApiFailure
from morag_worker.cli.args import add_command
from morag_worker.cli.common import connect, seg
from morag_worker.cli.output import clip, duration, print_json, table
from morag_worker.cli.status_view import status_lines
from morag_worker.cli.waiting import watch

#: Tasks 'morag tasks' shows unless --limit says otherwise: a screenful.
DEFAULT_LIMIT = 20
#: The server's largest page; longer listings are fetched page by page.
SERVER_PAGE = 500


def register(sub: Any) -> None:
    submit = add_command(sub, "submit", "submit a file or URL as a task", submit_task)
    submit.add_argument("target", help="a file path, or an http(s) URL for web and youtube")
    submit.add_argument("--type", required=True, dest="task_type", help="task type (morag types)")
    submit.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="K=V",
        help="task parameter, repeatable; the value is read as JSON when it parses "
        "(5, true, \"text\") and as text otherwise. 'morag types' lists each type's",
    )
    submit.add_argument("--priority", type=int, default=0, help="-100..100, higher first")
    submit.add_argument("--wait", action="store_true", help="follow progress, print the result")
    submit.add_argument(
        "--timeout", type=float, default=3600.0, help="seconds --wait waits (default 3600)"
    )
    for name, help_text, handler in (
        ("status", "a task's state, stage, progress and times", show_status),
        ("result", "a task's result: its Markdown (--json: everything)", show_result),
        ("cancel", "cancel a queued or running task", cancel_task),
    ):
        add_command(sub, name, help_text, handler).add_argument("task_id")
    tasks = add_command(sub, "tasks", "list your tasks, newest first", list_tasks)
    tasks.add_argument(
        "--state", choices=["queued", "leased", "completed", "failed", "dead", "cancelled"]
    )
    tasks.add_argument("--type", dest="task_type", help="only tasks of this type")
    tasks.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_LIMIT,
        help=f"most tasks shown (default {DEFAULT_LIMIT})",
    )


def parse_params(items: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ApiFailure(f"--param {item!r}: expected KEY=VALUE")
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw
    return params


def _type_info(api: Api, task_type: str) -> dict[str, Any] | None:
    """What the server says about ``task_type`` (None from an older server that cannot
    say); ApiFailure naming the known types when it does not know it."""
    try:
        types = api.get("/api/v1/task-types")["task_types"]
    except ApiFailure as exc:
        if exc.status == 404:  # a morag-server from before /api/v1/task-types
            return None
        raise
    from morag_worker.protocol import canonical_task_type  # pydantic: only when submitting

    name = canonical_task_type(task_type)
    found = next((t for t in types if t["task_type"] == name), None)
    if found is None:
        known = ", ".join(t["task_type"] for t in types)
        raise ApiFailure(f"--type {task_type}: unknown task type; this server takes {known}")
    return dict(found)


def check_submission(info: dict[str, Any], is_url: bool, params: dict[str, Any]) -> None:
    """Refuse what the server would refuse, before a large file is uploaded for nothing."""
    task_type = info["task_type"]
    if info["input"] == "url" and not is_url:
        raise ApiFailure(f"a {task_type} task takes an http(s) URL, not a file")
    if info["input"] != "url" and is_url:
        raise ApiFailure(
            f"a {task_type} task takes an uploaded file, not a URL: download it first "
            "(or use --type web for pages, --type youtube for videos yt-dlp supports)"
        )
    accepted = info.get("parameters")
    if accepted is None:
        return  # a plugin type: the server does not know its parameters either
    names = [p["name"] for p in accepted if p["name"] != "url"]
    unknown = sorted(set(params) - set(names) - ({"url"} if is_url else set()))
    if unknown:
        raise ApiFailure(
            f"--param {', '.join(unknown)}: not a parameter of {task_type} tasks; "
            f"{task_type} accepts: {', '.join(names) or 'none'}"
        )


def submit_task(args: argparse.Namespace) -> int:
    api = connect(args)
    params = parse_params(args.param)
    is_url = args.target.lower().startswith(("http://", "https://"))
    info = _type_info(api, args.task_type)
    if info is not None:
        check_submission(info, is_url, params)
    if is_url:
        params["url"] = args.target
        body = {"task_type": args.task_type, "parameters": params, "priority": args.priority}
        task_id = api.post_json("/api/v1/tasks", body)["task_id"]
    else:
        path = Path(args.target)
        if not path.is_file():
            raise ApiFailure(f"{args.target}: no such file")
        task_id = api.submit_file(path, args.task_type, params, args.priority)
    if not args.wait:
        if args.json:
            print_json({"task_id": task_id})
        else:
            print(task_id)
        return 0
    if not args.json:
        print(task_id, flush=True)
    return _wait_and_print(api, task_id, args)


def _wait_and_print(api: Api, task_id: str, args: argparse.Namespace) -> int:
    try:
        info = watch(api, task_id, args.timeout, sys.stderr)
    except KeyboardInterrupt:
        print(f"\nstopped waiting; the task goes on: morag status {task_id}", file=sys.stderr)
        return 130
    if info["state"] != "completed":
        if args.json:
            print_json(info)
        return 1
    envelope = api.get(f"/api/v1/tasks/{seg(task_id)}/result")
    if args.json:
        print_json(envelope)
    else:
        print(envelope["result"]["content"])
    return 0


def show_status(args: argparse.Namespace) -> int:
    info = connect(args).get(f"/api/v1/tasks/{seg(args.task_id)}")
    if args.json:
        print_json(info)
    else:
        print("\n".join(status_lines(info)))
    return 0


def show_result(args: argparse.Namespace) -> int:
    envelope = connect(args).get(f"/api/v1/tasks/{seg(args.task_id)}/result")
    if args.json:
        print_json(envelope)
    else:
        print(envelope["result"]["content"])
    return 0


def cancel_task(args: argparse.Namespace) -> int:
    """Cancel; a task that already ended is left as it is (exit 1 unless it was cancelled)."""
    api = connect(args)
    path = f"/api/v1/tasks/{seg(args.task_id)}"
    before = api.get(path)
    info = before if before["state"] in TERMINAL else api.delete(path)
    ok = info["state"] == "cancelled"
    if args.json:
        print_json(info)
    elif before["state"] in TERMINAL:
        print(
            f"morag: {info['task_id']} already {info['state']}; nothing to cancel", file=sys.stderr
        )
    else:
        where = (
            f" on {info['worker_id']}; it stops there within a heartbeat"
            if info["worker_id"]
            else ""
        )
        print(f"cancelled {info['task_id']}{where}")
    return 0 if ok else 1


def _fetch_tasks(api: Api, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Up to --limit tasks, newest first, page by page."""
    if args.limit < 1:
        raise ApiFailure(f"--limit {args.limit}: give 1 or more")
    tasks: list[dict[str, Any]] = []
    cursor = ""
    while len(tasks) < args.limit:
        query = {
            "state": args.state,
            "task_type": args.task_type,
            "limit": min(SERVER_PAGE, args.limit - len(tasks)),
            "cursor": cursor or None,
        }
        page = api.get("/api/v1/tasks", {k: v for k, v in query.items() if v is not None})
        tasks += page["tasks"]
        cursor = page.get("next_cursor") or ""
        if not cursor:
            break
    return tasks


def _source(task: dict[str, Any]) -> str:
    files = task["input_files"]
    if files:
        more = f" +{len(files) - 1}" if len(files) > 1 else ""
        return clip(files[0]["name"], 36) + more
    return clip(str(task["parameters"].get("url", "-")), 40)


def _ran(task: dict[str, Any], now: float) -> str:
    if task["started_at"] is None or task["state"] == "queued":
        return "-"
    end = task["finished_at"] if task["state"] in TERMINAL else now
    return duration((end or now) - task["started_at"])


def list_tasks(args: argparse.Namespace) -> int:
    tasks = _fetch_tasks(connect(args), args)
    if args.json:
        print_json({"tasks": tasks})
        return 0
    if not tasks:
        filters = [f"{k}={v}" for k, v in (("state", args.state), ("type", args.task_type)) if v]
        print("no tasks" + (f" ({', '.join(filters)})" if filters else ""))
        return 0
    now = time.time()
    rows = [
        [
            t["task_id"],
            t["task_type"],
            _source(t),
            t["state"],
            f"{t['attempt']}/{t['max_attempts']}",
            duration(now - t["created_at"]),
            _ran(t, now),
        ]
        for t in tasks
    ]
    print(table(["id", "type", "file or URL", "state", "attempts", "age", "duration"], rows))
    return 0
