"""A trial: submit, inject the fault, wait, and count from the database."""

from __future__ import annotations

import contextlib
import json
import os
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from chaoskit.common import SERVER_TYPES, TERMINAL, Options, Trial
from chaoskit.procs import Server, Supervisor
from chaoskit.proxy import TcpProxy
from chaoskit.store import Store
from morag_worker.cli.api import Api


@dataclass
class TaskSpec:
    task_type: str = "noop"
    parameters: dict[str, Any] = field(default_factory=dict)
    expect: str = "completed"  # or "failed": a failure (stored as the task's error) is its outcome
    timeout_s: float | None = None
    input_bytes: int = 0
    min_result: int = 0  # the stored result must be at least this long


def noops(n: int, rng: random.Random) -> list[TaskSpec]:
    return [TaskSpec(parameters={"sleep_s": round(rng.uniform(0.05, 0.4), 3)}) for _ in range(n)]


def submit(api: Api, spec: TaskSpec) -> str:
    form = {"task_type": spec.task_type, "parameters": json.dumps(spec.parameters)}
    if spec.timeout_s is not None:
        form["timeout_seconds"] = str(spec.timeout_s)
    payload = os.urandom(spec.input_bytes) if spec.input_bytes else b"chaos input\n"
    for attempt in range(20):
        try:
            reply = api.session.post(
                f"{api.base}/api/v1/tasks",
                data=form,
                files={"files": ("input.bin", payload, "application/octet-stream")},
                timeout=30,
            )
        except requests.RequestException:
            time.sleep(0.5)
            continue
        if reply.status_code == 201:
            return str(reply.json()["task_id"])
        if reply.status_code >= 500 and attempt < 19:
            time.sleep(0.5)
            continue
        raise RuntimeError(f"submitting {spec.task_type}: {reply.status_code} {reply.text[:300]}")
    raise RuntimeError("the server did not take a submission in 20 tries")


class Kind:
    """One kind of fault: sets up its cluster once, then runs trials on it."""

    name = ""
    needs = ""  # "root", "postgres": what the kind needs from this machine

    def __init__(self, opts: Options, root: Path) -> None:
        self.opts = opts
        self.root = root / self.name
        self.root.mkdir(parents=True)
        self.rng = random.Random(self.name)
        self.servers: list[Server] = []
        self.supervisors: list[Supervisor] = []
        self.proxies: list[TcpProxy] = []
        self.cleanups: list[Callable[[], None]] = []
        self.store = Store()
        self.user: Api | None = None
        self.key_file = self.root / "worker.key"

    # the cluster

    def server_args(self, *extra: str) -> tuple[str, ...]:
        return (
            "--lease-ttl",
            str(self.opts.lease_ttl_s),
            "--retry-backoff",
            "0.2",
            "--no-index",
            *SERVER_TYPES,
            *extra,
        )

    def add_server(self, *extra: str, name: str = "server", data_dir: Path | None = None) -> Server:
        server = Server(self.root / name, self.server_args(*extra), data_dir)
        server.start()
        self.servers.append(server)
        if self.user is None:
            admin_key = (server.data_dir / "admin.key").read_text().strip()
            admin = Api(server.url, admin_key)
            self.key_file.write_text(
                admin.post_json("/api/v1/keys", {"user_id": "chaos", "role": "worker"})["key"]
            )
            user_key = admin.post_json("/api/v1/keys", {"user_id": "chaos", "role": "user"})["key"]
            self.user_key = user_key
            self.user = Api(server.url, user_key, timeout_s=30)
        if self.store.sqlite_path is None and self.store.pg_url is None:
            self.store = Store(sqlite_path=server.data_dir / "morag.db")
        return server

    def add_supervisor(self, url: str, *extra: str, procs: int = 2) -> Supervisor:
        sup = Supervisor(
            self.root,
            f"{len(self.supervisors)}",
            url,
            self.key_file,
            "--cpu-procs",
            str(procs),
            "--drain-timeout",
            "20",
            *extra,
        )
        self.supervisors.append(sup)
        sup.start()
        return sup

    def setup(self) -> None:
        server = self.add_server()
        self.add_supervisor(server.url)

    def teardown(self) -> None:
        for sup in self.supervisors:
            with contextlib.suppress(Exception):
                sup.stop()
        for proxy in self.proxies:
            proxy.close()
        for server in self.servers:
            with contextlib.suppress(Exception):
                server.stop()
        for cleanup in reversed(self.cleanups):
            with contextlib.suppress(Exception):
                cleanup()

    # a trial

    def prepare(self, trial: int) -> None:
        """Before a trial's tasks are submitted (nothing runs then)."""

    def plan(self, trial: int) -> list[TaskSpec]:
        return noops(self.opts.tasks, self.rng)

    def fault(self, trial: int, ids: list[str]) -> bool:
        """Inject the fault (and end it: restart what was killed, heal the cut); True
        when it demonstrably happened."""
        raise NotImplementedError

    def started(self, ids: list[str], at_least: int) -> bool:
        rows = self.store.rows(ids)
        return rows is not None and sum(1 for r in rows.values() if r["attempt"] > 0) >= at_least

    def refused(self) -> int:
        return sum(
            sum(1 for m in sup.messages() if m == "task lease_lost") for sup in self.supervisors
        )

    def run_trial(self, trial: int) -> Trial:
        result = Trial()
        self.prepare(trial)
        self.refused()  # skip what earlier trials logged
        specs = self.plan(trial)
        assert self.user is not None
        user = self.user
        with ThreadPoolExecutor(8) as pool:  # all in quickly, so the fault meets most queued
            ids = list(pool.map(lambda spec: submit(user, spec), specs))
        result.tasks = len(ids)
        # the fault comes while tasks run: once a few have been leased
        deadline = time.monotonic() + 60
        while not self.started(ids, min(3, len(ids))) and time.monotonic() < deadline:
            time.sleep(0.05)
        started = time.monotonic()
        result.fault_seen = self.fault(trial, ids)
        specs += [TaskSpec() for _ in range(len(ids) - len(specs))]  # taken during the fault
        result.tasks = len(ids)
        end = started + self.opts.window_s
        rows: dict[str, dict[str, Any]] = {}
        while time.monotonic() < end:
            read = self.store.rows(ids)
            if read is not None:
                rows = read
                if len(rows) == len(ids) and all(r["state"] in TERMINAL for r in rows.values()):
                    result.recover_s = time.monotonic() - started
                    break
            time.sleep(0.1)
        time.sleep(0.3)  # late uploads of this trial land in this trial's figures
        for _ in range(50):
            read = self.store.rows(ids)
            if read is not None:
                rows = read
                break
            time.sleep(0.2)
        for task_id, spec in zip(ids, specs, strict=True):
            row = rows.get(task_id)
            if row is None:
                result.lost += 1
                result.notes.append(f"{task_id}: unknown to the server")
                continue
            result.extra += max(0, int(row["attempt"]) - 1)
            if int(row["completions"]) > 1:
                result.twice += 1
                result.notes.append(f"{task_id}: {row['completions']} completed attempts")
            state = row["state"]
            if state not in TERMINAL:
                result.stuck += 1
                result.notes.append(f"{task_id}: {state} after {self.opts.window_s:g} s")
            elif spec.expect == "completed" and (
                state != "completed" or not row["has_result"] or row["result_len"] < spec.min_result
            ):
                result.lost += 1
                result.notes.append(f"{task_id} ({spec.task_type}): {state}, no result stored")
            elif spec.expect == "failed" and state != "completed" and not row["has_error"]:
                result.lost += 1
                result.notes.append(f"{task_id} ({spec.task_type}): {state} without its error")
        result.refused = self.refused()
        return result
