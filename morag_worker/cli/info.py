"""``morag workers|types|search``: what serves the queue, what it takes, what it holds."""

from __future__ import annotations

import argparse
import time
from typing import Any

from morag_worker.cli.args import add_command
from morag_worker.cli.common import connect
from morag_worker.cli.output import ago, clip, print_json, table


def register(sub: Any) -> None:
    add_command(sub, "workers", "workers serving you (an admin: all of them)", list_workers)
    add_command(sub, "types", "task types, their parameters and who serves them", list_types)
    parser = add_command(sub, "search", "search your ingested content", search)
    parser.add_argument("query")
    parser.add_argument("--limit", type=int, default=5, help="hits to show (1-100, default 5)")


def _devices(devices: list[dict[str, Any]]) -> str:
    gpus = [
        f"gpu{d['index']}" + (f" {d['name']}" if d.get("name") else "")
        for d in devices
        if d["kind"] == "gpu"
    ]
    return ", ".join(gpus) or "cpu"


def list_workers(args: argparse.Namespace) -> int:
    workers = connect(args).get("/api/v1/workers")["workers"]
    if args.json:
        print_json({"workers": workers})
        return 0
    if not workers:
        print("no workers registered (start morag-supervisor with a worker key)")
        return 0
    now = time.time()
    rows = [
        [
            w["worker_id"],
            w["host"],
            ",".join(w["task_types"]) or "all",
            str(w["capacity"]),
            str(w["running"]),
            _devices(w["devices"]),
            ago(w["last_seen_at"], now) + ("" if w["online"] else " (offline)"),
        ]
        for w in workers
    ]
    headers = ["id", "host", "types", "children", "running", "devices", "last seen"]
    print(table(headers, rows))
    return 0


def list_types(args: argparse.Namespace) -> int:
    types = connect(args).get("/api/v1/task-types")["task_types"]
    if args.json:
        print_json({"task_types": types})
        return 0
    rows = []
    for t in types:
        params = t["parameters"]
        names = "any (plugin)" if params is None else ", ".join(p["name"] for p in params) or "-"
        rows.append(
            [t["task_type"], t["input"], f"{t['workers_online']} ({t['capacity_online']})", names]
        )
    print(table(["type", "input", "workers (children)", "parameters"], rows))
    return 0


def search(args: argparse.Namespace) -> int:
    body = {"query": args.query, "limit": args.limit}
    hits = connect(args).post_json("/api/v1/search", body)["hits"]
    if args.json:
        print_json({"hits": hits})
        return 0
    if not hits:
        print("no hits")
    for rank, hit in enumerate(hits, 1):
        where = " > ".join(hit["heading_path"]) or (
            f"{hit['start_s']:.1f}-{hit['end_s']:.1f} s" if hit["start_s"] is not None else ""
        )
        if hit.get("page"):
            where = f"page {hit['page']} {where}".strip()
        print(
            f"{rank}. {hit['score']:.3f}  {hit['source'] or hit['task_id']}  [{where}]\n"
            f"   {clip(hit['text'], 100)}"
        )
    return 0
