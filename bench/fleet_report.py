"""The tables of bench/fleet.py: one per configuration, a column per backlog level, the
ratio of each level to the first (the baseline, same run), the goal and how far the
worst level is from it."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

#: Server CPU per task the issue asks for (ms), by database.
CPU_GOAL_MS = {"postgres": 0.5, "sqlite": 0.3}
#: "Flat" from the smallest to the largest backlog: within this ratio (the run-to-run
#: spread of CPU/task on this shared machine is about 10 %).
FLAT_RATIO = 1.10


@dataclass
class Phase:
    backlog: int
    tasks: int
    elapsed_s: float
    server_cpu_s: float
    db_cpu_s: float
    client_cpu_s: float
    machine_busy_s: float
    latencies: list[float]
    calls: dict[str, int]
    doubles_fleet: int
    errors: dict[str, int] = field(default_factory=dict)
    doubles_db: int = -1
    #: Server CPU of one bare authenticated call, ms (set on the idle phase).
    floor_ms: float = float("nan")
    #: Server CPU of one task's calls made one at a time by one client, ms (idle phase).
    sequential_ms: float = float("nan")

    def per_task_ms(self, seconds: float) -> float:
        return seconds * 1000 / self.tasks if self.tasks else float("nan")

    @property
    def tps(self) -> float:
        return self.tasks / self.elapsed_s

    def pct_ms(self, q: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000

    @property
    def others_s(self) -> float:
        """Busy CPU on the machine that is neither the servers, their database backends
        nor the fleet: other tenants of a shared host (and PostgreSQL's own daemons)."""
        return self.machine_busy_s - self.server_cpu_s - self.db_cpu_s - self.client_cpu_s


def _rows(phases: list[Phase]) -> list[tuple[str, list[float], str]]:
    """(label, value per phase, format) for every figure of the table."""

    def per_task(calls: str) -> list[float]:
        return [p.calls.get(calls, 0) / p.tasks if p.tasks else float("nan") for p in phases]

    return [
        ("tasks/s", [p.tps for p in phases], "{:.0f}"),
        ("server CPU ms/task", [p.per_task_ms(p.server_cpu_s) for p in phases], "{:.3f}"),
        ("  PostgreSQL backends ms/task", [p.per_task_ms(p.db_cpu_s) for p in phases], "{:.3f}"),
        ("  fleet clients ms/task", [p.per_task_ms(p.client_cpu_s) for p in phases], "{:.3f}"),
        ("  other tenants, cores", [p.others_s / p.elapsed_s for p in phases], "{:.2f}"),
        ("lease latency p50 ms", [p.pct_ms(0.5) for p in phases], "{:.1f}"),
        ("lease latency p99 ms", [p.pct_ms(0.99) for p in phases], "{:.1f}"),
        ("lease calls/task", per_task("lease"), "{:.2f}"),
        ("result calls/task", per_task("results"), "{:.2f}"),
        ("heartbeats/s", [p.calls.get("heartbeat", 0) / p.elapsed_s for p in phases], "{:.0f}"),
        ("double assignments (fleet)", [float(p.doubles_fleet) for p in phases], "{:.0f}"),
    ]


def print_table(
    name: str, config: tuple[str, int], phases: list[Phase], args: argparse.Namespace, idle: Phase
) -> None:
    dialect, replicas = config
    title = "PostgreSQL" if dialect == "postgres" else "SQLite"
    plural = "s" if replicas > 1 else ""
    print(
        f"\n{name}: {title}, {replicas} replica{plural}; {args.workers} workers x {args.slots} "
        f"slots, no-op tasks ({args.work_ms:g} ms), {args.seconds:g} s per column"
    )
    base = phases[0].backlog
    head = [f"queued {p.backlog:,}" for p in phases]
    head += [f"{p.backlog:,}/{base:,}" for p in phases[1:]]
    print(f"{'figure':<30}" + "".join(f"{h:>16}" for h in head) + f"{'goal':>10}  vs goal")
    goal_ms = CPU_GOAL_MS[dialect]
    for label, values, fmt in _rows(phases):
        ratios = [v / values[0] if values[0] else float("nan") for v in values[1:]]
        cells = [fmt.format(v) for v in values] + [f"{r:.2f}" for r in ratios]
        goal, verdict = "", ""
        if label == "server CPU ms/task":
            worst = max(v if v == v else float("inf") for v in values)  # nan: no task done
            goal = f"<= {goal_ms}"
            verdict = "met" if worst <= goal_ms else f"{worst / goal_ms:.2f}x the goal"
            if worst == float("inf"):
                verdict = "not met: a column finished no task"
            flat = max(ratios, default=1.0)
            verdict += f"; flat {flat:.2f} (goal <= {FLAT_RATIO})"
            verdict += " met" if flat <= FLAT_RATIO else " not met"
        elif label == "double assignments (fleet)":
            goal = "0"
            verdict = "met" if max(values) == 0 else "NOT MET"
        print(f"{label:<30}" + "".join(f"{c:>16}" for c in cells) + f"{goal:>10}  {verdict}")
    db_doubles = phases[0].doubles_db
    print(
        f"{'double assignments (server)':<30}{db_doubles:>16}   whole run, from task_attempts: "
        + ("met" if db_doubles == 0 else "NOT MET")
    )
    stalled = [f"{p.backlog:,}" for p in phases if not p.tasks]
    if stalled:
        print(f"queued {', '.join(stalled)}: no result was accepted within the window")
    worst = max(p.per_task_ms(p.server_cpu_s) if p.tasks else float("inf") for p in phases)
    print(
        f"same run, server CPU: a bare authenticated call (GET /api/v1/workers/test) "
        f"{idle.floor_ms:.3f} ms; one task's calls (submit, lease, result) one at a time "
        f"{idle.sequential_ms:.3f} ms = {idle.sequential_ms / idle.floor_ms:.1f} bare calls; "
        f"in the fleet {worst:.3f} ms = {worst / idle.floor_ms:.1f} (worst column); "
        f"the goal {goal_ms} ms = {goal_ms / idle.floor_ms:.1f}"
    )
    idle_s = idle.elapsed_s
    print(
        f"idle fleet (no tasks, {idle_s:.0f} s): servers {idle.server_cpu_s / idle_s:.1%}"
        f" of a core, database {idle.db_cpu_s / idle_s:.1%}; "
        f"{idle.calls.get('heartbeat', 0) / idle.elapsed_s:.0f} heartbeats/s, "
        f"{idle.calls.get('lease', 0) / idle.elapsed_s:.0f} lease replies/s"
    )
    errors = {k: v for p in phases for k, v in p.errors.items()}
    if errors:
        print(f"refused calls and lost leases over the run: {errors}")
