"""``morag index …``: the search index as an operator sees it (admin key).

    morag index status                     pending and failed counts, the store in use
    morag index failures [--limit N]       results the indexer gave up on, with the error
    morag index retry TASK_ID… | --all     queue failed results for indexing again
    morag index rebuild [--wait]           index every completed result again
    morag index export [FILE]              every point as JSON lines (default: stdout)
    morag index import FILE                upsert points exported before (- for stdin)

Every command is an HTTP call to the server, which owns the database, the embedding
model and the vector store; the CLI only asks and shows.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import requests

from morag_worker.cli.api import ApiFailure
from morag_worker.cli.args import add_command
from morag_worker.cli.common import connect
from morag_worker.cli.output import print_json

#: Seconds between progress lines while ``rebuild --wait`` waits.
PROGRESS_INTERVAL_S = 2.0
#: Bytes per read while streaming an export or an import.
STREAM_CHUNK_BYTES = 1 << 20


def register(sub: Any) -> None:
    """Add the ``index`` command and its subcommands to ``morag``'s subparsers."""
    index = sub.add_parser(
        "index",
        help="the search index: status, failures, retry, rebuild, export, import (admin)",
        description="The search index (admin key).",
    )
    commands = index.add_subparsers(dest="index_command", metavar="COMMAND", required=True)
    add_command(commands, "status", "pending and failed counts, the store in use", _status)
    failures = add_command(commands, "failures", "results the indexer gave up on", _failures)
    failures.add_argument("--limit", type=int, default=100, help="at most this many")
    retry = add_command(
        commands, "retry", "queue failed results for indexing again", _retry, json_flag=False
    )
    retry.add_argument("task_ids", nargs="*", metavar="TASK_ID")
    retry.add_argument("--all", action="store_true", help="every failed result")
    rebuild = add_command(
        commands, "rebuild", "index every completed result again", _rebuild, json_flag=False
    )
    rebuild.add_argument("--wait", action="store_true", help="show progress until done")
    rebuild.add_argument("--timeout", type=float, default=24 * 3600.0, help="seconds to wait")
    export = add_command(
        commands,
        "export",
        "every point (id, vector, payload) as JSON lines",
        _export,
        json_flag=False,
    )
    export.add_argument("file", nargs="?", default="-", help="where to write (default: stdout)")
    load = add_command(commands, "import", "upsert points from an export", _import, json_flag=False)
    load.add_argument("file", help="an export's JSON lines (- for stdin)")


def _status(args: argparse.Namespace) -> int:
    status = connect(args).get("/api/v1/index")
    if args.json:
        print_json(status)
        return 0
    print(f"store: {status['backend']}")
    print(f"pending: {status['pending']}  failed: {status['failed']}")
    if status.get("error"):
        print(f"search unavailable: {status['error']}")
    return 0


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _failures(args: argparse.Namespace) -> int:
    failures = connect(args).get(f"/api/v1/index/failures?limit={args.limit}")["failures"]
    if args.json:
        print_json({"failures": failures})
        return 0
    if not failures:
        print("no failed results")
    for row in failures:
        print(
            f"{row['task_id']}  {row['user_id']}  {row['task_type']}  "
            f"failed {_when(row['index_failed_at'])} after {row['index_attempts']} attempts\n"
            f"   {row['index_error']}"
        )
    return 0


def _retry(args: argparse.Namespace) -> int:
    if not args.task_ids and not args.all:
        raise ApiFailure("index retry: name TASK_IDs, or pass --all for every failed result")
    body = {"task_ids": args.task_ids, "all_failed": args.all}
    reply = connect(args).post_json("/api/v1/index/retry", body)
    for task_id in reply["retried"]:
        print(f"retried {task_id}")
    for task_id in reply["not_failed"]:
        print(f"not failed: {task_id} (not waiting for indexing)")
    if not reply["retried"] and not reply["not_failed"]:
        print("no failed results")
    return 0


def _rebuild(args: argparse.Namespace) -> int:
    api = connect(args)
    status = api.post_json("/api/v1/index/rebuild", {})
    total = status["pending"]
    print(f"queued {total} results for indexing into {status['backend']}")
    if not args.wait:
        return 0
    deadline = time.monotonic() + args.timeout
    while status["pending"] and time.monotonic() < deadline:
        time.sleep(PROGRESS_INTERVAL_S)
        status = api.get("/api/v1/index")
        done = total - status["pending"]
        print(f"{done}/{total} indexed, {status['failed']} failed", file=sys.stderr)
    if status["pending"]:
        raise ApiFailure(f"rebuild still has {status['pending']} results pending")
    print(f"rebuild done: {total - status['failed']} indexed, {status['failed']} failed")
    return 1 if status["failed"] else 0


def _export(args: argparse.Namespace) -> int:
    api = connect(args)
    url = f"{api.base}/api/v1/index/export"
    try:
        with contextlib.ExitStack() as stack:
            response = stack.enter_context(api.session.get(url, stream=True, timeout=api.timeout_s))
            if response.status_code >= 400:
                api._check(response)  # raises with the server's message
            out = (
                sys.stdout.buffer
                if args.file == "-"
                else stack.enter_context(Path(args.file).open("wb"))
            )
            lines = 0
            for chunk in response.iter_content(STREAM_CHUNK_BYTES):
                out.write(chunk)
                lines += chunk.count(b"\n")
    except requests.RequestException as exc:
        raise ApiFailure(f"export from {api.base} broke off: {exc}") from None
    except OSError as exc:
        raise ApiFailure(f"{args.file}: {exc.strerror}") from None
    print(f"exported {lines} points", file=sys.stderr)
    return 0


def _read(path: str) -> Iterator[bytes]:
    with contextlib.ExitStack() as stack:
        handle = sys.stdin.buffer if path == "-" else stack.enter_context(Path(path).open("rb"))
        while chunk := handle.read(STREAM_CHUNK_BYTES):
            yield chunk


def _import(args: argparse.Namespace) -> int:
    if args.file != "-" and not Path(args.file).is_file():
        raise ApiFailure(f"{args.file}: no such file")
    reply = connect(args)._request(
        "POST",
        "/api/v1/index/import",
        data=_read(args.file),
        headers={"Content-Type": "application/x-ndjson"},
    )
    print(f"imported {reply['imported']} points")
    return 0
