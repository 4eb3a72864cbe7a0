"""The server as a fleet sees it: N simulated workers (64 by default) speaking the real
protocol (bench/fleet_sim.py) against real ``morag-server`` processes, with a producer
submitting no-op tasks, in three configurations: one and two replicas on PostgreSQL (a
private database, dropped afterwards) and one on SQLite.

Each configuration runs once per backlog level (``--backlogs``, 100 and 1,000 by
default): before the level's window, queued tasks the fleet cannot claim are added
(other task types of the fleet's user, no-op tasks of 50 other users, a quarter of them
at a higher priority and all older than the fleet's tasks, so an index walk in claim
order meets them first). A claim must not scan them: server CPU per task should stay
flat, and the table shows each level's ratio to the first (the baseline, same run).

Figures per window (``--seconds``, after ``--warmup``):
- tasks/s: results the server accepted within the window;
- server CPU ms/task: user+system CPU of all replica processes over the window, divided
  by those tasks (the goal); PostgreSQL's backends for this database and the fleet's own
  client process are shown beside it, as is the rest of the machine (other tenants);
- lease latency: per task, from when it could first be handed out (the later of its
  submission and the lease call) to the lease reply;
- double assignments: tasks leased to two workers at once or completed twice, from the
  fleet's ledger and from the server's attempts table (checked after the run).

Run with ``make bench`` (or ``python bench/fleet.py``; ``--backlogs 100,100000`` for the
deep queue, ``--configs sqlite`` for one configuration).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from fleet_backlog import Database, add_backlog, double_assignments
from fleet_http import Conn
from fleet_report import Phase, print_table
from fleet_sim import Ledger, Producer, SimWorker

from morag_worker.cli.api import Api
from morag_worker.cli.local import Proc, free_port, start_server

CONFIGS = {"pg1": ("postgres", 1), "pg2": ("postgres", 2), "sqlite": ("sqlite", 1)}
PG_URL = os.environ.get("MORAG_TEST_POSTGRES_URL", "postgresql://127.0.0.1:5432/test")
TICK_S = 1 / os.sysconf("SC_CLK_TCK")
#: Calls timed for the unit costs: enough for 10 ms clock ticks to average out.
UNIT_CALLS = 800


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of these processes (all their threads)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) * TICK_S
    return total


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy (every process, every core)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) * TICK_S


def run_config(name: str, args: argparse.Namespace, levels: list[int]) -> list[Phase]:
    dialect, replicas = CONFIGS[name]
    root = Path(tempfile.mkdtemp(prefix=f"bench-fleet-{name}-"))
    try:
        db = Database.create(dialect, PG_URL, root)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    servers: list[Proc] = []
    try:
        ports = [free_port() for _ in range(replicas)]
        for i, port in enumerate(ports):
            extra = ["--database-url", db.server_url(i)] if dialect == "postgres" else []
            servers.append(
                start_server(
                    root / f"r{i}", port, "--no-index", "--lease-ttl", str(args.lease_ttl), *extra
                )
            )
        admin = Api(f"http://127.0.0.1:{ports[0]}", (root / "r0" / "admin.key").read_text().strip())
        user_key = admin.post_json("/api/v1/keys", {"user_id": "fleet", "role": "user"})["key"]
        worker_keys = [
            admin.post_json("/api/v1/keys", {"user_id": "fleet", "role": "worker"})["key"]
            for _ in range(args.workers)
        ]
        probe_key = admin.post_json("/api/v1/keys", {"user_id": "fleet", "role": "worker"})["key"]
        units = asyncio.run(_unit_costs(ports[0], servers[0].pid, user_key, probe_key))
        phases = asyncio.run(
            _drive(args, levels, db, ports, [s.pid for s in servers], user_key, worker_keys)
        )
        phases[0].floor_ms, phases[0].sequential_ms = units["bare"], units["task"]
        for server in servers:
            server.stop(30)
        doubles = double_assignments(db)
        for phase in phases:
            phase.doubles_db = doubles
        return phases
    finally:
        for server in servers:
            server.stop(30)
        db.drop()
        shutil.rmtree(root, ignore_errors=True)


async def _unit_costs(port: int, pid: int, user_key: str, worker_key: str) -> dict[str, float]:
    """Server CPU (ms) of the cheapest authenticated call (``GET /api/v1/workers/test``),
    the unit a task's cost is read in here (the machine's load moves both alike), and of
    one task's calls made one at a time by one client (submit, lease, result): what a
    task costs without a fleet around it."""
    user = Conn("127.0.0.1", port, {"Authorization": f"Bearer {user_key}"})
    worker = Conn("127.0.0.1", port, {"Authorization": f"Bearer {worker_key}"})
    lease = {"max_tasks": 1, "wait_seconds": 0, "task_types": ["noop"]}
    register = {"worker_id": "fleet-probe", "task_types": ["noop"], "protocol_version": 1}
    try:
        await worker.json("POST", "/api/v1/workers/register", register)
        for _ in range(100):
            await worker.json("GET", "/api/v1/workers/test")
        before = cpu_s([pid])
        for _ in range(UNIT_CALLS):
            await worker.json("GET", "/api/v1/workers/test")
        bare = cpu_s([pid]) - before
        before = cpu_s([pid])
        for _ in range(UNIT_CALLS // 4):
            await user.json("POST", "/api/v1/tasks", {"task_type": "noop"}, ok=(201,))
            [task] = (await worker.json("POST", "/api/v1/workers/fleet-probe/lease", lease))[
                "tasks"
            ]
            result = {"task_id": task["task_id"], "lease_token": task["lease_token"]}
            result |= {"status": "completed", "result": {"content": "ok"}}
            await worker.json("POST", "/api/v1/workers/fleet-probe/results", {"results": [result]})
        task_s = cpu_s([pid]) - before
        return {"bare": bare * 1000 / UNIT_CALLS, "task": task_s * 1000 / (UNIT_CALLS // 4)}
    finally:
        user.close()
        worker.close()


async def _drive(
    args: argparse.Namespace,
    levels: list[int],
    db: Database,
    ports: list[int],
    server_pids: list[int],
    user_key: str,
    worker_keys: list[str],
) -> list[Phase]:
    ledger = Ledger()
    workers = [
        SimWorker(
            i, "127.0.0.1", ports[i % len(ports)], key, ledger, args.slots, args.work_ms / 1e3
        )
        for i, key in enumerate(worker_keys)
    ]
    for worker in workers:
        await worker.register()
    headers = {"Authorization": f"Bearer {user_key}"}
    submit_conns = [
        Conn("127.0.0.1", ports[i % len(ports)], headers) for i in range(args.submitters)
    ]
    producer = Producer(submit_conns, ledger, ahead=args.workers * args.slots)
    producer.paused = True
    running = [asyncio.create_task(w.run()) for w in workers]
    running.append(asyncio.create_task(producer.run()))
    phases = []
    try:
        # The fleet with nothing to do: long-polls waiting, heartbeats with status reports.
        await asyncio.sleep(1.0)
        phases.append(await _measure(args, -1, ledger, server_pids, db, args.idle_seconds))
        have = 0
        for level in levels:
            await _quiesce(ledger, producer, workers, running)
            await asyncio.to_thread(add_backlog, db, have, level - have)
            have = level
            producer.resume()
            phases.append(await _measure(args, level, ledger, server_pids, db, args.seconds))
    finally:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        for worker in workers:
            worker.close()
        for conn in submit_conns:
            conn.close()
    return phases


async def _quiesce(
    ledger: Ledger, producer: Producer, workers: list[SimWorker], running: list[asyncio.Task[None]]
) -> None:
    """Stop submitting and wait until every submitted task's result is acknowledged, so
    the backlog is added to a queue nobody is claiming from."""
    producer.paused = True
    deadline = time.monotonic() + 60
    while ledger.outstanding() > 0 or any(w.held or w.busy for w in workers):
        for task in running:
            if task.done():
                task.result()  # a simulated worker died: say why
        if time.monotonic() > deadline:
            raise RuntimeError("the fleet did not drain within 60 s; see the server logs")
        await asyncio.sleep(0.05)


async def _measure(
    args: argparse.Namespace,
    level: int,
    ledger: Ledger,
    server_pids: list[int],
    db: Database,
    seconds: float,
) -> Phase:
    """One window of ``seconds`` after the warm-up; ``level`` -1 is the idle fleet."""
    await asyncio.sleep(args.warmup if level >= 0 else 0)
    db_pids = db.backend_pids()
    start = time.time()
    ledger.window = (start, start + seconds)
    ledger.done_in_window = 0
    ledger.calls_in_window.clear()
    before = (cpu_s(server_pids), cpu_s(db_pids), time.process_time(), machine_busy_s())
    await asyncio.sleep(seconds)
    after = (cpu_s(server_pids), cpu_s(db_pids), time.process_time(), machine_busy_s())
    elapsed = time.time() - start
    server, database, client, machine = (b - a for a, b in zip(before, after, strict=True))
    return Phase(
        backlog=level,
        tasks=ledger.done_in_window,
        elapsed_s=elapsed,
        server_cpu_s=server,
        db_cpu_s=database,
        client_cpu_s=client,
        machine_busy_s=machine,
        latencies=ledger.lease_latencies(),
        calls=dict(ledger.calls_in_window),
        doubles_fleet=ledger.double_assignments(),
        errors=dict(ledger.errors),
    )


def _levels(text: str) -> list[int]:
    try:
        levels = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give whole numbers separated by commas, e.g. 100,1000"
        ) from None
    if not levels or any(n < 0 for n in levels) or levels != sorted(set(levels)):
        raise argparse.ArgumentTypeError(
            f"{text!r}: give increasing numbers of queued tasks (0 or more), "
            "e.g. 100,1000; the first is the baseline"
        )
    return levels


def _configs(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"{text!r}: unknown {unknown or 'nothing given'}; choose from {', '.join(CONFIGS)}"
        )
    return names


def _positive(kind: type[int] | type[float]):  # type: ignore[no-untyped-def]
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r}: must be more than 0")
        return value

    return parse


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=_positive(int), default=64, help="simulated hosts")
    parser.add_argument("--slots", type=_positive(int), default=2, help="children per host")
    parser.add_argument(
        "--work-ms", type=float, default=0.0, help="time a child holds each task (0: no-op)"
    )
    parser.add_argument("--backlogs", type=_levels, default=[100, 1000])
    parser.add_argument("--configs", type=_configs, default=list(CONFIGS))
    parser.add_argument("--seconds", type=_positive(float), default=10.0, help="window")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before each window")
    parser.add_argument(
        "--idle-seconds", type=_positive(float), default=5.0, help="window of the idle fleet"
    )
    parser.add_argument("--submitters", type=_positive(int), default=4)
    parser.add_argument(
        "--lease-ttl",
        type=_positive(float),
        default=30.0,
        help="server lease TTL; workers beat every third of it (default: the server's, 30)",
    )
    args = parser.parse_args()
    if args.work_ms < 0 or args.warmup < 0:
        parser.error("--work-ms and --warmup: 0 or more")
    results = {}
    for name in args.configs:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        results[name] = run_config(name, args, args.backlogs)
    for name, phases in results.items():
        print_table(name, CONFIGS[name], phases[1:], args, idle=phases[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
