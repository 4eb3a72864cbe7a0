"""``morag``: create keys, submit files and URLs, watch tasks, fetch results, search, demo."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from morag_worker.cli import index
from morag_worker.cli.api import Api, ApiFailure, read_key


def _add_connection(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--server-url", default=os.environ.get("MORAG_SERVER_URL", "http://127.0.0.1:8000")
    )
    p.add_argument(
        "--api-key", default=os.environ.get("MORAG_API_KEY", ""), help="API key [MORAG_API_KEY]"
    )
    p.add_argument(
        "--api-key-file",
        default=os.environ.get("MORAG_API_KEY_FILE", ""),
        help="file holding the API key (e.g. <data-dir>/admin.key)",
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="morag", description=__doc__)
    _add_connection(p)
    sub = p.add_subparsers(dest="command", required=True)

    keys = sub.add_parser("keys", help="manage API keys (admin)").add_subparsers(
        dest="keys_command", required=True
    )
    create = keys.add_parser("create", help="create a key; prints only the key")
    create.add_argument("--user", required=True)
    create.add_argument("--role", required=True, choices=["worker", "user", "admin"])
    create.add_argument("--pool", action="store_true", help="worker key serving every user")
    create.add_argument("--expires-days", type=float)
    create.add_argument("--name", default="")
    keys.add_parser("list", help="list keys")
    revoke = keys.add_parser("revoke", help="revoke a key")
    revoke.add_argument("key_id")

    submit = sub.add_parser("submit", help="submit a file or URL")
    submit.add_argument("target", help="a file path or an http(s) URL")
    submit.add_argument("--type", required=True, dest="task_type")
    submit.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="K=V",
        help="task parameter (value parsed as JSON when it can be)",
    )
    submit.add_argument("--priority", type=int, default=0)
    submit.add_argument("--wait", action="store_true", help="wait and print the result")
    submit.add_argument("--timeout", type=float, default=3600.0, help="seconds --wait waits")

    status = sub.add_parser("status", help="a task's state")
    status.add_argument("task_id")
    result = sub.add_parser("result", help="a task's result")
    result.add_argument("task_id")
    result.add_argument("--json", action="store_true", help="the whole result as JSON")
    cancel = sub.add_parser("cancel", help="cancel a task")
    cancel.add_argument("task_id")
    sub.add_parser("tasks", help="list your tasks")
    search = sub.add_parser("search", help="search your ingested content")
    search.add_argument("query")
    search.add_argument("--limit", type=int, default=5)
    index.register(sub)
    demo = sub.add_parser("demo", help="run server + supervisor on the bundled samples")
    demo.add_argument("--keep", action="store_true", help="keep the demo's data dir")
    return p


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


def cmd_keys(api: Api, args: argparse.Namespace) -> int:
    if args.keys_command == "create":
        body = {
            "user_id": args.user,
            "role": args.role,
            "pool": args.pool,
            "expires_days": args.expires_days,
            "name": args.name,
        }
        print(api.post_json("/api/v1/keys", body)["key"])
    elif args.keys_command == "list":
        for key in api.get("/api/v1/keys")["keys"]:
            state = "revoked" if key["revoked_at"] else "active"
            print(
                f"{key['key_id']}  {key['prefix']}…  {key['user_id']:<16} {key['role']:<7} "
                f"{'pool ' if key['pool'] else ''}{state}"
            )
    else:
        info = api.delete(f"/api/v1/keys/{args.key_id}")
        print(f"revoked {info['key_id']}")
    return 0


def cmd_submit(api: Api, args: argparse.Namespace) -> int:
    params = parse_params(args.param)
    if args.target.lower().startswith(("http://", "https://")):
        params.setdefault("url", args.target)
        body = {"task_type": args.task_type, "parameters": params, "priority": args.priority}
        task_id = api.post_json("/api/v1/tasks", body)["task_id"]
    else:
        path = Path(args.target)
        if not path.is_file():
            raise ApiFailure(f"{args.target}: no such file")
        task_id = api.submit_file(path, args.task_type, params, args.priority)
    print(task_id)
    if not args.wait:
        return 0
    info = api.wait(task_id, args.timeout, progress=sys.stderr)
    if info["state"] != "completed":
        return 1
    print(api.get(f"/api/v1/tasks/{task_id}/result")["result"]["content"])
    return 0


def cmd_status(api: Api, args: argparse.Namespace) -> int:
    info = api.get(f"/api/v1/tasks/{args.task_id}")
    print(json.dumps(info, indent=2))
    return 0


def cmd_result(api: Api, args: argparse.Namespace) -> int:
    envelope = api.get(f"/api/v1/tasks/{args.task_id}/result")
    print(json.dumps(envelope, indent=2) if args.json else envelope["result"]["content"])
    return 0


def cmd_tasks(api: Api, _args: argparse.Namespace) -> int:
    for t in api.get("/api/v1/tasks")["tasks"]:
        print(f"{t['task_id']}  {t['task_type']:<9} {t['state']:<10} attempt {t['attempt']}")
    return 0


def cmd_search(api: Api, args: argparse.Namespace) -> int:
    hits = api.post_json("/api/v1/search", {"query": args.query, "limit": args.limit})["hits"]
    if not hits:
        print("no hits")
    for rank, hit in enumerate(hits, 1):
        where = " > ".join(hit["heading_path"]) or (
            f"{hit['start_s']:.1f}-{hit['end_s']:.1f} s" if hit["start_s"] is not None else ""
        )
        if hit.get("page"):
            where = f"page {hit['page']} {where}".strip()
        text = " ".join(hit["text"].split())[:100]
        print(
            f"{rank}. {hit['score']:.3f}  {hit['source'] or hit['task_id']}  [{where}]\n   {text}"
        )
    return 0


COMMANDS = {
    "keys": cmd_keys,
    "submit": cmd_submit,
    "status": cmd_status,
    "result": cmd_result,
    "tasks": cmd_tasks,
    "search": cmd_search,
    "index": index.run,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            from morag_worker.cli.demo import run_demo

            return run_demo(keep=args.keep)
        api = Api(args.server_url, read_key(args.api_key, args.api_key_file))
        return COMMANDS[args.command](api, args)
    except ApiFailure as exc:
        print(f"morag: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
