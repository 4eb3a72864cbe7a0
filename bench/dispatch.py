"""Dispatch overhead: morag-worker (server + supervisor, 2 CPU children) vs Celery + Redis
(prefork, concurrency 2), measured in the same run on no-op tasks.

- pickup latency: submit → start in a child, with idle workers, one task at a time;
- throughput: 2,000 queued no-op tasks drained by 2 children, from the first start to
  the last result. Both systems hold 8 tasks ahead of their 2 children (Celery's default
  prefetch multiplier 4; `--prefetch 8` here).
- durability: the same morag-worker run on SQLite with ``synchronous=FULL`` (the default:
  every acknowledged write survives a power loss) and ``NORMAL`` (`--sqlite-synchronous
  normal`), to show what durable commits cost.

Prints a table with the ratios. Run with `make bench` (or `python bench/dispatch.py`).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from morag_worker.cli.api import Api
from morag_worker.cli.local import free_port, start_server, start_supervisor

#: Tasks held ahead of the children in the throughput run, as Celery's default reserves.
PREFETCH = 8


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def morag_run(n_latency: int, n_throughput: int, *server_args: str) -> dict[str, float]:
    root = Path(tempfile.mkdtemp(prefix="bench-dispatch-"))
    port = free_port()
    server = start_server(root / "server", port, "--no-index", *server_args)
    url = f"http://127.0.0.1:{port}"
    admin = Api(url, (root / "server" / "admin.key").read_text().strip())
    user = Api(url, admin.post_json("/api/v1/keys", {"user_id": "b", "role": "user"})["key"])
    key_file = root / "worker.key"
    key_file.write_text(admin.post_json("/api/v1/keys", {"user_id": "b", "role": "worker"})["key"])
    sup = start_supervisor(
        url,
        key_file,
        root / "sup.log",
        free_port(),
        "--cpu-procs",
        "2",
        "--poll-interval",
        "30",
        "--log-level",
        "WARNING",
    )
    try:
        latencies = []
        for _ in range(n_latency):
            t0 = time.time()
            task_id = user.post_json("/api/v1/tasks", {"task_type": "noop", "parameters": {}})[
                "task_id"
            ]
            _wait_done(user, [task_id])
            started = user.get(f"/api/v1/tasks/{task_id}/result")["result"]["metadata"][
                "started_at"
            ]
            latencies.append(started - t0)
        sup.stop(30)
        ids = [
            user.post_json("/api/v1/tasks", {"task_type": "noop", "parameters": {}})["task_id"]
            for _ in range(n_throughput)
        ]
        t_start = time.time()
        sup = start_supervisor(
            url,
            key_file,
            root / "sup2.log",
            free_port(),
            "--cpu-procs",
            "2",
            "--poll-interval",
            "30",
            "--log-level",
            "WARNING",
            "--prefetch",
            str(PREFETCH),
            wait_ready=False,
        )
        _wait_count(user, n_throughput + n_latency)
        _wait_done(user, ids[-1:])
        t_end = time.time()
        first = min(
            user.get(f"/api/v1/tasks/{i}/result")["result"]["metadata"]["started_at"]
            for i in ids[:20]
        )
        del t_start
        return {
            "p50": pct(latencies, 0.5),
            "p99": pct(latencies, 0.99),
            "tps": n_throughput / (t_end - first),
        }
    finally:
        sup.stop(30)
        server.stop(30)


def _bare_server(prefix: str) -> tuple[Any, Api, Any]:
    """A server with no supervisor: its process, a user's client and a worker client."""
    from morag_worker.client import WorkerClient

    root = Path(tempfile.mkdtemp(prefix=prefix))
    port = free_port()
    server = start_server(root / "server", port, "--no-index")
    url = f"http://127.0.0.1:{port}"
    admin = Api(url, (root / "server" / "admin.key").read_text().strip())
    user = Api(url, admin.post_json("/api/v1/keys", {"user_id": "b", "role": "user"})["key"])
    worker_key = admin.post_json("/api/v1/keys", {"user_id": "b", "role": "worker"})["key"]
    return server, user, WorkerClient(url, worker_key, "w")


def floor_run(n_latency: int) -> dict[str, float]:
    """The protocol's own floor: submit → a bare long-poll lease returns, no supervisor."""
    import threading

    from morag_worker.protocol import LeaseRequest

    server, user, worker = _bare_server("bench-floor-")
    returned: list[float] = []
    try:
        for _ in range(n_latency):
            thread = threading.Thread(
                target=lambda: (
                    worker.lease(LeaseRequest(max_tasks=1, wait_seconds=30), retry_for_s=0),
                    returned.append(time.time()),
                )
            )
            thread.start()
            time.sleep(0.02)  # the lease call is waiting on the server
            t0 = time.time()
            user.post_json("/api/v1/tasks", {"task_type": "noop", "parameters": {}})
            thread.join()
            returned[-1] -= t0
        return {"p50": pct(returned, 0.5), "p99": pct(returned, 0.99)}
    finally:
        server.stop(30)


def _server_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wake_path_run(n: int) -> dict[str, float]:
    """Server CPU per call on the wake path, against the same calls made alone: CPU time
    is what a loaded, noisy machine distorts least (docs/design.md, Dispatch latency)."""
    import threading

    from morag_worker.protocol import LeaseRequest

    server, user, worker = _bare_server("bench-wake-")

    def submit() -> None:
        user.post_json("/api/v1/tasks", {"task_type": "noop", "parameters": {}})

    def lease(wait_s: float) -> None:
        worker.lease(LeaseRequest(max_tasks=1, wait_seconds=wait_s), retry_for_s=0)

    def woken() -> None:
        waiting = threading.Thread(target=lease, args=(30,))
        waiting.start()
        time.sleep(0.01)  # the long-poll is waiting on the server
        submit()
        waiting.join()

    steps = [
        ("submit, alone", submit),
        ("lease of a ready task", lambda: lease(0)),
        ("lease, queue empty", lambda: lease(0)),
        ("long-poll timing out (10 ms)", lambda: lease(0.01)),
        ("submit + waiting long-poll", woken),
    ]
    try:
        costs = {}
        for label, step in steps:
            before = _server_cpu_s(server.pid)
            for _ in range(n):
                step()
            costs[label] = (_server_cpu_s(server.pid) - before) / n
        return costs
    finally:
        server.stop(30)


def _wait_done(api: Api, ids: list[str]) -> None:
    """Poll gently: the waiting must not steal the CPU the system under test needs."""
    for task_id in ids:
        while api.get(f"/api/v1/tasks/{task_id}")["state"] != "completed":
            time.sleep(0.01)


def _wait_count(api: Api, total: int) -> None:
    while _completed(api) < total:
        time.sleep(0.05)


def _completed(api: Api) -> int:
    # the metrics endpoint counts by state at scrape time without listing every task
    text = api.session.get(api.base + "/metrics", timeout=10).text
    return int(
        sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("morag_server_tasks{") and 'state="completed"' in line
        )
    )


def celery_run(n_latency: int, n_throughput: int) -> dict[str, float]:
    import celery_noop

    app = celery_noop.app
    app.control.purge()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "celery_noop",
            "worker",
            "--pool=prefork",
            "--concurrency=2",
            "--loglevel=WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        env=env,
        cwd=Path(__file__).parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        celery_noop.noop.delay().get(timeout=60)  # warm: the worker is up
        latencies = []
        for _ in range(n_latency):
            t0 = time.time()
            started = celery_noop.noop.delay().get(timeout=30)
            latencies.append(started - t0)
        results = [celery_noop.noop.delay() for _ in range(n_throughput)]
        starts = [r.get(timeout=300) for r in results]
        t_end = time.time()
        return {
            "p50": pct(latencies, 0.5),
            "p99": pct(latencies, 0.99),
            "tps": n_throughput / (t_end - min(starts)),
        }
    finally:
        worker.terminate()
        worker.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency-tasks", type=int, default=200)
    parser.add_argument("--tasks", type=int, default=2000)
    args = parser.parse_args()
    floor = floor_run(args.latency_tasks)
    ours = morag_run(args.latency_tasks, args.tasks)
    normal = morag_run(args.latency_tasks, args.tasks, "--sqlite-synchronous", "normal")
    try:
        base = celery_run(args.latency_tasks, args.tasks)
    except Exception as exc:  # no Redis: print ours alone and say why
        print(f"Celery baseline unavailable: {exc}")
        base = None
    print(
        f"\ndispatch: {args.tasks} no-op tasks, 2 children; pickup over {args.latency_tasks}"
        " tasks with idle workers"
    )
    print(f"{'metric':<24}{'morag-worker':>14}{'celery+redis':>14}{'ratio':>10}")
    rows = [
        ("pickup p50 (ms)", "p50", 1000.0),
        ("pickup p99 (ms)", "p99", 1000.0),
        ("throughput (tasks/s)", "tps", 1.0),
    ]
    for label, key, scale in rows:
        theirs = f"{base[key] * scale:14.1f}" if base else f"{'-':>14}"
        ratio = f"{ours[key] / base[key]:10.2f}" if base else f"{'-':>10}"
        print(f"{label:<24}{ours[key] * scale:14.1f}{theirs}{ratio}")
    print("ratio = morag-worker / celery (latency: lower is better; throughput: higher)")
    print(
        f"protocol floor (submit -> bare long-poll returns): p50 {floor['p50'] * 1000:.1f} ms,"
        f" p99 {floor['p99'] * 1000:.1f} ms"
    )
    _durability_table(ours, normal, rows)
    _wake_table(wake_path_run(args.latency_tasks))
    return 0


def _wake_table(costs: dict[str, float]) -> None:
    alone = costs["submit, alone"] + costs["lease of a ready task"]
    print("\nserver CPU per call (ms); ratio against a submit plus a ready lease made alone")
    for label, cost in costs.items():
        print(f"{label:<32}{cost * 1000:10.2f}{cost / alone:10.2f}")


def _durability_table(
    full: dict[str, float], normal: dict[str, float], rows: list[tuple[str, str, float]]
) -> None:
    print("\nSQLite durability, same run: synchronous=FULL (default) vs NORMAL")
    print(f"{'metric':<24}{'FULL':>14}{'NORMAL':>14}{'ratio':>10}")
    for label, key, scale in rows:
        print(
            f"{label:<24}{full[key] * scale:14.1f}{normal[key] * scale:14.1f}"
            f"{full[key] / normal[key]:10.2f}"
        )
    print("ratio = FULL / NORMAL: the cost of surviving a power loss")


if __name__ == "__main__":
    sys.exit(main())
