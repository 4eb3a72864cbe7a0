"""Fault campaign: faults injected into real processes, with nothing lost and nothing
stored twice, in figures.

Every kind of fault runs ``--trials`` times against a real ``morag-server`` and real
``morag-supervisor`` processes with spawned children, on 127.0.0.1, kept up across the
trials of a kind. A trial submits ``--tasks`` small tasks, injects its fault while they
run, waits until every task is terminal (or the recovery window ends) and then reads the
server's database: the task rows and their attempts history.

Columns of the table (one row per kind):

- trials, tasks: trials run and tasks submitted (acknowledged with 201) in them;
- lost: a task that reached no terminal state with its outcome stored (a task meant to
  complete ended failed, dead or cancelled, or without its result; or the server no
  longer knows an acknowledged task);
- stored twice: a task whose attempts history shows more than one completed attempt;
- stuck: a task not terminal when the recovery window (``--window``) ended;
- extra attempts: attempts beyond one per task (expected after kills: the killed attempt
  is retried);
- late refused: results that supervisors posted on a stale lease and the server refused
  with 409 (``task lease_lost`` in the supervisors' logs);
- faults seen: trials in which the fault demonstrably happened (the killed pid is gone,
  the proxy cut connections, the server answered 507, …);
- recover: seconds from the fault's start until every task of the trial was terminal
  (median and maximum), cut and full-disk durations included.

The process exits 1 when lost, stored twice or stuck is not zero in any row, or a fault
was not seen in some trial. ``make chaos`` runs it; it is not part of ``make test`` or
``make bench``. ``tests/faults/test_chaos.py`` runs two trials of each kind.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # chaoskit, also when imported

from chaoskit.common import Options, Row, log
from chaoskit.infra import missing
from chaoskit.kinds_kill import (
    ChildKill,
    Drain,
    LargeResult,
    PostgresRestart,
    ServerKill,
    ServerKillPostgres,
    ServerKillReplicas,
    SighupUnderLoad,
    SupervisorKill,
)
from chaoskit.kinds_starve import (
    CutBlackhole,
    CutRefuse,
    CutReset,
    MemoryAndHang,
    ServerDiskFull,
    WorkerDiskFull,
)
from chaoskit.trial import Kind

KINDS: dict[str, type[Kind]] = {
    cls.name: cls
    for cls in (
        ChildKill,
        SupervisorKill,
        ServerKill,
        ServerKillPostgres,
        ServerKillReplicas,
        PostgresRestart,
        CutRefuse,
        CutBlackhole,
        CutReset,
        Drain,
        MemoryAndHang,
        WorkerDiskFull,
        ServerDiskFull,
        SighupUnderLoad,
        LargeResult,
    )
}


#: Set by SIGINT/SIGTERM: the trial running ends, then the table of what ran is printed.
STOP = threading.Event()


def run_kind(name: str, opts: Options, root: Path, until: float | None = None) -> Row:
    """Run ``opts.trials`` trials of one kind (fewer when ``until``, a time.monotonic()
    deadline, passes first: the row says how many ran)."""
    row = Row(name)
    cls = KINDS[name]
    if STOP.is_set():
        row.skipped = "not run (stopped)"
        return row
    why = missing(cls.needs)
    if why:
        row.skipped = why
        log(f"{name}: skipped: {why}")
        return row
    kind = cls(opts, root)
    try:
        log(f"{name}: starting the cluster")
        kind.setup()
        for trial in range(opts.trials):
            if STOP.is_set():
                log(f"{name}: stopped after {trial} trials; the table follows")
                break
            if until is not None and trial and time.monotonic() > until:
                log(f"{name}: its share of --time-budget is used after {trial} trials")
                break
            result = kind.run_trial(trial)
            row.trials.append(result)
            recover = f"{result.recover_s:.1f} s" if result.recover_s is not None else "-"
            log(
                f"{name} trial {trial + 1}/{opts.trials}: lost {result.lost}, twice "
                f"{result.twice}, stuck {result.stuck}, extra {result.extra}, refused "
                f"{result.refused}, fault seen {result.fault_seen}, recovered in {recover}"
            )
            for note in result.notes[:10]:
                log(f"  {note}")
    finally:
        kind.teardown()
    return row


def campaign(kinds: list[str], opts: Options, root: Path | None = None) -> list[Row]:
    """Run every kind in ``kinds`` for ``opts.trials`` trials; one row per kind."""
    own = root is None
    base = Path(tempfile.mkdtemp(prefix="chaos-")) if root is None else root
    end = time.monotonic() + opts.budget_min * 60 if opts.budget_min else None
    try:
        rows = []
        for done, name in enumerate(kinds):
            # each kind gets an equal share of what is left of the budget
            share = None if end is None else (end - time.monotonic()) / (len(kinds) - done)
            rows.append(
                run_kind(name, opts, base, None if share is None else time.monotonic() + share)
            )
        return rows
    finally:
        if own and not opts.keep:
            shutil.rmtree(base, ignore_errors=True)
        elif own:
            log(f"kept {base}")


HEADERS = (
    "kind",
    "trials",
    "tasks",
    "lost",
    "stored twice",
    "stuck",
    "extra attempts",
    "late refused",
    "faults seen",
    "recover s (median / max)",
)


def table(rows: list[Row]) -> str:
    lines = [
        "| " + " | ".join(HEADERS) + " |",
        "|" + "|".join("---" if i == 0 else "--:" for i in range(len(HEADERS))) + "|",
    ]
    for row in rows:
        if row.skipped:
            lines.append(f"| {row.kind} | skipped: {row.skipped} |" + " |" * (len(HEADERS) - 2))
            continue
        cells = [
            row.kind,
            str(len(row.trials)),
            str(row.total("tasks")),
            str(row.total("lost")),
            str(row.total("twice")),
            str(row.total("stuck")),
            str(row.total("extra")),
            str(row.total("refused")),
            f"{row.total('fault_seen')}/{len(row.trials)}",
            row.recover(),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> tuple[list[str], Options]:
    parser = argparse.ArgumentParser(
        description="Fault campaign through real server and supervisor processes.",
        epilog="kinds: " + ", ".join(KINDS),
    )
    parser.add_argument("--trials", type=int, default=10, help="trials per kind (default 10)")
    parser.add_argument(
        "--kinds", default="all", help="comma-separated kinds to run (default: all)"
    )
    parser.add_argument("--tasks", type=int, default=24, help="tasks per trial (default 24)")
    parser.add_argument(
        "--cut-seconds", type=float, default=10.0, help="length of a network cut (default 10)"
    )
    parser.add_argument(
        "--disk-full-seconds",
        type=float,
        default=3.0,
        help="how long a disk stays full (default 3)",
    )
    parser.add_argument(
        "--window",
        type=float,
        default=120.0,
        help="seconds after a fault by which every task must be terminal (default 120)",
    )
    parser.add_argument(
        "--lease-ttl", type=float, default=3.0, help="the server's lease TTL, seconds (default 3)"
    )
    parser.add_argument(
        "--time-budget",
        type=float,
        default=0.0,
        metavar="MINUTES",
        help="stop each kind's trials once its equal share of MINUTES is used (at least one "
        "trial a kind; the table reports the trials that ran); default: no budget",
    )
    parser.add_argument("--keep", action="store_true", help="keep the logs and data dirs")
    args = parser.parse_args(argv)
    kinds = (
        list(KINDS)
        if args.kinds == "all"
        else [k.strip() for k in args.kinds.split(",") if k.strip()]
    )
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        parser.error(
            f"--kinds: unknown kind {', '.join(unknown) or '(none given)'}; choose from "
            + ", ".join(KINDS)
        )
    checks = (
        (args.trials >= 1, "--trials must be at least 1"),
        (args.tasks >= 4, "--tasks must be at least 4"),
        (args.cut_seconds > 0, "--cut-seconds must be > 0"),
        (args.disk_full_seconds > 0, "--disk-full-seconds must be > 0"),
        (args.window > 0, "--window must be > 0"),
        (args.lease_ttl > 0, "--lease-ttl must be > 0"),
        (args.time_budget >= 0, "--time-budget must be >= 0 (0: none)"),
    )
    for ok, message in checks:
        if not ok:
            parser.error(message)
    opts = Options(
        trials=args.trials,
        tasks=args.tasks,
        cut_s=args.cut_seconds,
        disk_full_s=args.disk_full_seconds,
        window_s=args.window,
        lease_ttl_s=args.lease_ttl,
        keep=args.keep,
        budget_min=args.time_budget,
    )
    return kinds, opts


def main(argv: list[str] | None = None) -> int:
    kinds, opts = parse_args(argv)
    started = time.monotonic()

    def stop(signum: int, _: object) -> None:
        STOP.set()  # only recorded: the trial running ends, then the table is printed

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    rows = campaign(kinds, opts)
    print(table(rows))
    print(
        f"\n{opts.trials} trials per kind asked"
        f"{' (stopped early)' if STOP.is_set() else ''}"
        f"{f' within {opts.budget_min:g} min' if opts.budget_min else ''}, "
        f"{opts.tasks} tasks a trial, lease TTL "
        f"{opts.lease_ttl_s:g} s, cuts {opts.cut_s:g} s, full disks {opts.disk_full_s:g} s; "
        f"{(time.monotonic() - started) / 60:.1f} min on {os.cpu_count()} CPUs"
    )
    bad = [row.kind for row in rows if row.bad]
    if bad:
        print(f"FAILED: {', '.join(bad)} (a task lost, stored twice or stuck, or a fault not seen)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
