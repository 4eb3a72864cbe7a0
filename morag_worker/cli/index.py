"""``morag index …``: the search index as an operator sees it (admin key).

    morag index status                     pending and failed counts, the store in use
    morag index failures [--limit N]       results the indexer gave up on, with the error
    morag index retry TASK_ID… | --all     queue failed results for indexing again
    morag index rebuild [--wait]           index every completed result again

Every command is an HTTP call to the server, which owns the database, the embedding
model and the vector store; the CLI only asks and shows.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone
from typing import Any

from morag_worker.cli.api import Api, ApiFailure

#: Seconds between progress lines while ``rebuild --wait`` waits.
PROGRESS_INTERVAL_S = 2.0


def register(sub: Any) -> None:
    """Add the ``index`` command and its subcommands to ``morag``'s subparsers."""
    index = sub.add_parser("index", help="the search index: status, failures, retry, rebuild")
    commands = index.add_subparsers(dest="index_command", required=True)
    commands.add_parser("status", help="pending and failed counts, the store in use")
    failures = commands.add_parser("failures", help="results the indexer gave up on")
    failures.add_argument("--limit", type=int, default=100)
    retry = commands.add_parser("retry", help="queue failed results for indexing again")
    retry.add_argument("task_ids", nargs="*", metavar="TASK_ID")
    retry.add_argument("--all", action="store_true", help="every failed result")
    rebuild = commands.add_parser("rebuild", help="index every completed result again")
    rebuild.add_argument("--wait", action="store_true", help="show progress until done")
    rebuild.add_argument("--timeout", type=float, default=24 * 3600.0, help="seconds to wait")


def run(api: Api, args: argparse.Namespace) -> int:
    """Run the parsed ``index`` subcommand; returns the exit status."""
    handlers = {
        "status": _status,
        "failures": _failures,
        "retry": _retry,
        "rebuild": _rebuild,
    }
    return handlers[args.index_command](api, args)


def _status(api: Api, _args: argparse.Namespace) -> int:
    status = api.get("/api/v1/index")
    print(f"store: {status['backend']}")
    print(f"pending: {status['pending']}  failed: {status['failed']}")
    if status.get("error"):
        print(f"search unavailable: {status['error']}")
    return 0


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _failures(api: Api, args: argparse.Namespace) -> int:
    failures = api.get(f"/api/v1/index/failures?limit={args.limit}")["failures"]
    if not failures:
        print("no failed results")
    for row in failures:
        print(
            f"{row['task_id']}  {row['user_id']}  {row['task_type']}  "
            f"failed {_when(row['index_failed_at'])} after {row['index_attempts']} attempts\n"
            f"   {row['index_error']}"
        )
    return 0


def _retry(api: Api, args: argparse.Namespace) -> int:
    if not args.task_ids and not args.all:
        raise ApiFailure("index retry: name TASK_IDs, or pass --all for every failed result")
    reply = api.post_json(
        "/api/v1/index/retry", {"task_ids": args.task_ids, "all_failed": args.all}
    )
    for task_id in reply["retried"]:
        print(f"retried {task_id}")
    for task_id in reply["not_failed"]:
        print(f"not failed: {task_id} (not waiting for indexing)")
    if not reply["retried"] and not reply["not_failed"]:
        print("no failed results")
    return 0


def _rebuild(api: Api, args: argparse.Namespace) -> int:
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
