"""Kinds of fault that kill or restart a process: a child, a supervisor, the server
(SQLite, PostgreSQL, one of two replicas), PostgreSQL itself; a drain and a SIGHUP."""

from __future__ import annotations

import contextlib
import os
import signal
import time

from chaoskit.common import BIG_RESULT_KIB
from chaoskit.infra import PrivatePostgres, pg_schema
from chaoskit.procs import pid_alive
from chaoskit.proxy import TcpProxy
from chaoskit.store import Store
from chaoskit.trial import Kind, TaskSpec, noops
from morag_worker.cli.api import Api


class ChildKill(Kind):
    """kill -9 of a child running a task (its task is retried on a fresh child).

    A child that dies during a task counts against its slot's crash budget (5 in 5
    minutes, then quarantine: docs/operations.md, Limits, watchdogs and quarantine), and
    trials back to back kill one every few seconds, a crash storm that quarantines both
    slots within a minute. So the supervisor is restarted (a drain, between trials) every
    ``KILLS_PER_LIFE`` trials: each slot then sees at most that many kills, and the kind
    measures recovery from a kill, not the quarantine (tests/faults covers that)."""

    name = "child-kill"
    KILLS_PER_LIFE = 4

    def prepare(self, trial: int) -> None:
        if trial and trial % self.KILLS_PER_LIFE == 0:
            sup = self.supervisors[0]
            sup.stop()
            sup.start()

    def fault(self, trial: int, ids: list[str]) -> bool:
        sup = self.supervisors[0]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            busy = [c for c in sup.children() if c.get("task_id") and c.get("pid")]
            if busy:
                pid = int(self.rng.choice(busy)["pid"])
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                return _gone(pid)
            time.sleep(0.02)
        return False


def _gone(pid: int, timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return False


class SupervisorKill(Kind):
    """kill -9 of one of two supervisors; the other goes on, the killed one restarts."""

    name = "supervisor-kill"

    def setup(self) -> None:
        server = self.add_server()
        self.add_supervisor(server.url)
        self.add_supervisor(server.url)

    def fault(self, trial: int, ids: list[str]) -> bool:
        sup = self.supervisors[trial % 2]
        children = [int(c["pid"]) for c in sup.children() if c.get("pid")]
        pid = sup.kill9()
        orphans_gone = all(_gone(child, 30) for child in children)
        sup.start(wait_ready=False)
        return not pid_alive(pid) and orphans_gone and bool(children)


class ServerKill(Kind):
    """kill -9 of the server (SQLite), restarted on the same data."""

    name = "server-kill-sqlite"

    def fault(self, trial: int, ids: list[str]) -> bool:
        server = self.servers[0]
        pid = server.kill9()
        time.sleep(0.5)
        server.start()
        return not pid_alive(pid)


class ServerKillPostgres(ServerKill):
    name = "server-kill-postgres"
    needs = "postgres"

    def setup(self) -> None:
        schema = pg_schema()
        url = schema.__enter__()
        self.cleanups.append(lambda: schema.__exit__(None, None, None))
        self.store = Store(pg_url=url)
        server = self.add_server("--database-url", url)
        self.add_supervisor(server.url)


class ServerKillReplicas(Kind):
    """Two server replicas on one PostgreSQL and one files directory; one supervisor
    talks to the first, one through a fail-over proxy in front of both; the first
    replica is killed."""

    name = "server-kill-replicas"
    needs = "postgres"

    def setup(self) -> None:
        schema = pg_schema()
        url = schema.__enter__()
        self.cleanups.append(lambda: schema.__exit__(None, None, None))
        self.store = Store(pg_url=url)
        # one file store behind both, as deployed (docs/operations.md, the scale profile)
        shared = self.root / "server-data"
        first = self.add_server("--database-url", url, name="replica-1", data_dir=shared)
        second = self.add_server("--database-url", url, name="replica-2", data_dir=shared)
        assert self.user is not None
        self.user = Api(second.url, self.user_key, timeout_s=30)  # submissions via the survivor
        proxy = TcpProxy([first.port, second.port])
        self.proxies.append(proxy)
        self.add_supervisor(first.url)
        self.add_supervisor(proxy.url)

    def fault(self, trial: int, ids: list[str]) -> bool:
        server = self.servers[0]
        pid = server.kill9()
        time.sleep(0.5)
        server.start()
        return not pid_alive(pid)


class PostgresRestart(Kind):
    """A restart of PostgreSQL itself (a private instance) under the server."""

    name = "postgres-restart"
    needs = "initdb"

    def setup(self) -> None:
        pg = PrivatePostgres()
        self.cleanups.append(pg.stop)
        pg.start()
        self.pg = pg
        self.store = Store(pg_url=pg.url)
        server = self.add_server("--database-url", pg.url)
        self.add_supervisor(server.url)

    def fault(self, trial: int, ids: list[str]) -> bool:
        before = self.pg.pid()
        self.pg.restart()
        return self.pg.pid() != before and not pid_alive(before)


class Drain(Kind):
    """SIGTERM to a supervisor under load: it drains (running tasks finish, prefetched
    ones go back) and exits 0; then it starts again."""

    name = "drain"

    def setup(self) -> None:
        server = self.add_server()
        self.add_supervisor(server.url, "--prefetch", "2")

    def fault(self, trial: int, ids: list[str]) -> bool:
        sup = self.supervisors[0]
        assert sup.proc is not None
        sup.signal(signal.SIGTERM)
        code = sup.proc.proc.wait(timeout=60)
        drained = any("draining" in m for m in sup.messages())
        sup.start(wait_ready=False)
        return code == 0 and drained


class SighupUnderLoad(Kind):
    """SIGHUP (a rolling recycle of the children) while tasks run."""

    name = "sighup"

    def fault(self, trial: int, ids: list[str]) -> bool:
        sup = self.supervisors[0]
        before = {int(c["pid"]) for c in sup.children() if c.get("pid")}
        sup.signal(signal.SIGHUP)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            now = {int(c["pid"]) for c in sup.children() if c.get("pid")}
            if before and len(now) == len(before) and not now & before:
                return True  # every child replaced
            time.sleep(0.1)
        return False


class LargeResult(Kind):
    """A third of the tasks return results over the inline limit (they go from child to
    supervisor through a file); the server is killed while they are uploaded."""

    name = "large-result"

    def plan(self, trial: int) -> list[TaskSpec]:
        specs = noops(self.opts.tasks, self.rng)
        for i in range(0, len(specs), 3):
            specs[i] = TaskSpec(
                "bigresult", {"kib": BIG_RESULT_KIB}, min_result=BIG_RESULT_KIB * 1024
            )
        return specs

    def fault(self, trial: int, ids: list[str]) -> bool:
        server = self.servers[0]
        pid = server.kill9()
        time.sleep(0.5)
        server.start()
        return not pid_alive(pid)
