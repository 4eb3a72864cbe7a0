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
import contextlib
import json
import os
import random
import re
import secrets
import select
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from morag_worker.cli.api import Api  # noqa: E402
from morag_worker.cli.local import Proc, free_port, start_server, wait_http  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
SERVER_TYPES = (
    "--extra-task-types",
    "hog,hang,crash,cudaerr,envcheck,bigerror,bigresult,unserialisable,garbage,halfmessage,assume",
)  # every type the fault_processors plugin registers (tests/faults/faultkit.py)
TERMINAL = frozenset({"completed", "failed", "dead", "cancelled"})
#: Results over this size go from the child to the supervisor through a file
#: (``morag_worker.supervisor.child.INLINE_RESULT_BYTES``).
BIG_RESULT_KIB = 320
PG_URL = os.environ.get("MORAG_TEST_POSTGRES_URL", "postgresql://127.0.0.1:5432/test")
_TASK_ID = re.compile(r"^t_[0-9a-f]+$")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---- options and results -------------------------------------------------------------------


@dataclass
class Options:
    trials: int = 10
    tasks: int = 24
    cut_s: float = 10.0
    disk_full_s: float = 3.0
    window_s: float = 120.0
    lease_ttl_s: float = 3.0
    keep: bool = False
    budget_min: float = 0.0  # 0: no time budget


@dataclass
class Trial:
    tasks: int = 0
    lost: int = 0
    twice: int = 0
    stuck: int = 0
    extra: int = 0
    refused: int = 0
    recover_s: float | None = None
    fault_seen: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass
class Row:
    kind: str
    trials: list[Trial] = field(default_factory=list)
    skipped: str = ""

    def total(self, name: str) -> int:
        return sum(int(getattr(t, name)) for t in self.trials)

    @property
    def bad(self) -> bool:
        if self.skipped:
            return False
        return bool(
            self.total("lost")
            or self.total("twice")
            or self.total("stuck")
            or self.total("fault_seen") < len(self.trials)
        )

    def recover(self) -> str:
        times = [t.recover_s for t in self.trials if t.recover_s is not None]
        if not times:
            return "-"
        return f"{statistics.median(times):.1f} / {max(times):.1f}"


# ---- the server's database -------------------------------------------------------------------


class Store:
    """Reads task rows and attempts straight from the server's database (SQLite file or
    PostgreSQL URL), so the figures do not depend on the server being up."""

    QUERY = (
        "SELECT t.task_id, t.state, t.attempt, t.result IS NOT NULL AS has_result, "
        "COALESCE(length(t.result), 0) AS result_len, t.last_error IS NOT NULL AS has_error, "
        "(SELECT count(*) FROM task_attempts a WHERE a.task_id = t.task_id "
        " AND a.outcome = 'completed') AS completions "
        "FROM tasks t WHERE t.task_id IN ({ids})"
    )

    def __init__(self, sqlite_path: Path | None = None, pg_url: str | None = None) -> None:
        self.sqlite_path = sqlite_path
        self.pg_url = pg_url

    def rows(self, task_ids: list[str]) -> dict[str, dict[str, Any]] | None:
        """The rows of ``task_ids``, or None while the database cannot be read."""
        if not task_ids:
            return {}
        assert all(_TASK_ID.match(t) for t in task_ids)
        sql = self.QUERY.format(ids=",".join(f"'{t}'" for t in task_ids))
        try:
            if self.pg_url:
                import psycopg
                from psycopg.rows import dict_row

                with psycopg.connect(self.pg_url, connect_timeout=3, row_factory=dict_row) as c:
                    return {r["task_id"]: dict(r) for r in c.execute(sql).fetchall()}
            assert self.sqlite_path is not None
            uri = f"file:{self.sqlite_path}?mode=ro"
            with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5)) as conn:
                conn.row_factory = sqlite3.Row
                return {r["task_id"]: dict(r) for r in conn.execute(sql).fetchall()}
        except Exception:  # the database restarting, a file mid-checkpoint: read again
            return None


# ---- processes ---------------------------------------------------------------------------------


def _child_env() -> dict[str, str]:
    path = os.pathsep.join(
        p for p in (str(FIXTURES), str(ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    return {"PYTHONPATH": path, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "DO_NOT_TRACK": "1"}


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class Server:
    """A real morag-server on a fixed port (so that it restarts where clients look)."""

    def __init__(self, root: Path, args: tuple[str, ...], data_dir: Path | None = None) -> None:
        self.logs = root
        self.port = free_port()
        self.args = args
        self.data_dir = data_dir or root / "data"
        self.proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = start_server(
            self.logs, self.port, "--data-dir", str(self.data_dir), *self.args, env=_child_env()
        )

    def kill9(self) -> int:
        assert self.proc is not None
        pid = self.proc.pid
        os.kill(pid, signal.SIGKILL)
        self.proc.proc.wait(timeout=30)
        self.proc.kill()  # anything it started goes with it
        return pid

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(timeout_s=20)


class Supervisor:
    """A real morag-supervisor with the fault task types, restartable on the same
    worker id and health port."""

    def __init__(self, root: Path, name: str, url: str, key_file: Path, *args: str) -> None:
        self.name = name
        self.url = url
        self.key_file = key_file
        self.health = free_port()
        self.args = args
        self.log_path = root / f"supervisor-{name}.log"
        self.proc: Proc | None = None
        self._offset = 0

    def start(self, wait_ready: bool = True) -> None:
        args = [
            sys.executable,
            "-m",
            "morag_worker.cli.supervisor",
            "--server-url",
            self.url,
            "--api-key-file",
            str(self.key_file),
            "--worker-id",
            f"chaos-{self.name}",
            "--health-port",
            str(self.health),
            "--health-host",
            "127.0.0.1",
            "--threads-per-proc",
            "1",
            "--plugin",
            "fault_processors",
            *self.args,
        ]
        self.proc = Proc(args, self.log_path, {"MORAG_LOG_FORMAT": "json", **_child_env()})
        if wait_ready:
            wait_http(f"http://127.0.0.1:{self.health}/ready", 180, self.proc.proc)

    def get(self, path: str) -> Any:
        return requests.get(f"http://127.0.0.1:{self.health}{path}", timeout=5)

    def children(self) -> list[dict[str, Any]]:
        try:
            return list(self.get("/status").json()["children"])
        except (requests.RequestException, ValueError, KeyError):
            return []

    def metric(self, name: str) -> float:
        from prometheus_client.parser import text_string_to_metric_families

        try:
            text = self.get("/metrics").text
        except requests.RequestException:
            return 0.0
        return sum(
            s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == name
        )

    def kill9(self) -> int:
        """SIGKILL to the supervisor alone (its children must notice on their own)."""
        assert self.proc is not None
        pid = self.proc.pid
        os.kill(pid, signal.SIGKILL)
        self.proc.proc.wait(timeout=30)
        return pid

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.signal(sig)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(timeout_s=30)

    def messages(self) -> list[str]:
        """Log messages written since the last call."""
        try:
            with self.log_path.open("rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
        except OSError:
            return []
        end = data.rfind(b"\n") + 1
        self._offset += end
        found = []
        for line in data[:end].splitlines():
            with contextlib.suppress(ValueError):
                found.append(str(json.loads(line).get("message", "")))
        return found


# ---- a TCP proxy that cuts the network three ways ----------------------------------------------


class TcpProxy:
    """A TCP proxy on 127.0.0.1 in front of one or more upstream ports (the first that
    accepts a connection gets it: a fail-over load balancer).

    Modes: ``up`` forwards; ``refuse`` closes the listening socket and every connection
    (new connections are refused); ``blackhole`` stops moving bytes and stops accepting
    (connections hang, data waits in the kernel's buffers and flows again when the cut
    ends, as after a routing outage); ``reset`` resets every established connection and
    every new one with a TCP RST.
    """

    def __init__(self, upstreams: list[int]) -> None:
        self.upstreams = upstreams
        self.port = free_port()
        self.mode = "up"
        self.lock = threading.Lock()
        self.pairs: set[tuple[socket.socket, socket.socket]] = set()
        self.effects = 0  # connections refused, closed, reset or held by a cut
        self.closed = False
        self.listener: socket.socket | None = None
        self._listen()
        threading.Thread(target=self._accept_loop, daemon=True, name="proxy-accept").start()

    def _listen(self) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(256)
        self.listener = sock

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @staticmethod
    def _rst(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            sock.close()

    def _accept_loop(self) -> None:
        while not self.closed:
            listener = self.listener
            if self.mode == "blackhole" or listener is None:
                time.sleep(0.02)  # new connections wait in the backlog: they hang
                continue
            try:
                ready, _, _ = select.select([listener], [], [], 0.1)
                if not ready:
                    continue
                client, _ = listener.accept()
            except (OSError, ValueError):
                continue
            if self.mode == "reset":
                self.effects += 1
                self._rst(client)
                continue
            upstream = self._connect()
            if upstream is None:
                self._rst(client)
                continue
            pair = (client, upstream)
            with self.lock:
                self.pairs.add(pair)
            threading.Thread(target=self._pump, args=(pair,), daemon=True).start()

    def _connect(self) -> socket.socket | None:
        for port in self.upstreams:
            with contextlib.suppress(OSError):
                return socket.create_connection(("127.0.0.1", port), timeout=2)
        return None

    def _pump(self, pair: tuple[socket.socket, socket.socket]) -> None:
        client, upstream = pair
        other = {client: upstream, upstream: client}
        try:
            while not self.closed and pair in self.pairs:
                if self.mode == "blackhole":
                    time.sleep(0.02)
                    continue
                ready, _, _ = select.select([client, upstream], [], [], 0.1)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    other[sock].sendall(data)
        except (OSError, ValueError):
            pass
        finally:
            with self.lock:
                self.pairs.discard(pair)
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.close()

    def set_mode(self, mode: str) -> None:
        with self.lock:
            pairs = list(self.pairs)
            if mode in ("refuse", "reset"):
                self.pairs.clear()
            self.mode = mode
            if mode == "refuse" and self.listener is not None:
                self.listener.close()
                self.listener = None
                self.effects += 1
            if mode == "up" and self.listener is None:
                self._listen()
        if mode == "refuse":
            for pair in pairs:
                self.effects += 1
                for sock in pair:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                        sock.close()
        elif mode == "reset":
            for client, upstream in pairs:
                self.effects += 1
                self._rst(client)
                self._rst(upstream)
        elif mode == "blackhole":
            self.effects += len(pairs)

    def close(self) -> None:
        self.closed = True
        with self.lock:
            if self.listener is not None:
                self.listener.close()
            pairs = list(self.pairs)
            self.pairs.clear()
        for pair in pairs:
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.close()


# ---- PostgreSQL ----------------------------------------------------------------------------


class PrivatePostgres:
    """A PostgreSQL of our own (``initdb``/``pg_ctl`` in a temp dir, on a free port), to
    restart without disturbing anyone else's server on 5432."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="chaos-pg-"))
        self.root.chmod(0o755)
        self.data = self.root / "data"
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # initdb refuses to run as root
            self.as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.root, "postgres")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        # pg_ctl's postmaster inherits the output: a file, never a pipe we would wait on
        out = self.root / "pg_ctl.out"
        with out.open("w") as handle:
            done = subprocess.run(
                [*self.as_user, *args],
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                timeout=120,
                cwd=self.root,
            )
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {out.read_text()[-2000:]}")

    def start(self) -> None:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.root / "pg.log"),
            "-w",
            "start",
        )

    def pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def restart(self) -> None:
        log_file = str(self.root / "pg.log")
        self._run("pg_ctl", "-D", str(self.data), "-l", log_file, "-m", "fast", "-w", "restart")

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def pg_schema() -> Iterator[str]:
    """A fresh schema on the shared PostgreSQL (``MORAG_TEST_POSTGRES_URL``), dropped
    afterwards; yields its URL."""
    import psycopg

    admin = psycopg.connect(PG_URL, autocommit=True, connect_timeout=3)
    schema = "chaos_" + secrets.token_hex(6)
    admin.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()


# ---- small disks -------------------------------------------------------------------------


def can_mount() -> str:
    """'' when this process can mount a tmpfs, else why not."""
    if os.geteuid() != 0:
        return "needs root to mount a small tmpfs"
    return ""


@contextlib.contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"cannot mount a tmpfs at {path}: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path) -> None:
    """Write until the filesystem refuses: the disk is then really full."""
    with contextlib.suppress(OSError), path.open("wb", buffering=0) as handle:
        for block in (1 << 20, 1 << 12, 1 << 9, 1):
            with contextlib.suppress(OSError):
                while True:
                    handle.write(b"\0" * block)


# ---- tasks ---------------------------------------------------------------------------------


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


# ---- kinds of fault ------------------------------------------------------------------------


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


class ChildKill(Kind):
    name = "child-kill"

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


class NetworkCut(Kind):
    """The supervisor reaches the server through a proxy that cuts it off for
    ``--cut-seconds``."""

    mode = ""

    def setup(self) -> None:
        server = self.add_server()
        proxy = TcpProxy([server.port])
        self.proxies.append(proxy)
        self.add_supervisor(proxy.url)

    def fault(self, trial: int, ids: list[str]) -> bool:
        proxy = self.proxies[0]
        before = proxy.effects
        proxy.set_mode(self.mode)
        time.sleep(self.opts.cut_s)
        seen = proxy.effects > before
        proxy.set_mode("up")
        return seen


class CutRefuse(NetworkCut):
    name = "cut-refuse"
    mode = "refuse"


class CutBlackhole(NetworkCut):
    name = "cut-blackhole"
    mode = "blackhole"


class CutReset(NetworkCut):
    name = "cut-reset"
    mode = "reset"


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


class MemoryAndHang(Kind):
    """A task over the hard memory limit (killed, retried, then fine) and a hung task
    (killed at its deadline: failed, not retried) among ordinary ones."""

    name = "memory-hang"

    def setup(self) -> None:
        server = self.add_server()
        self.add_supervisor(server.url, "--max-memory-per-child", "200M,300M")

    def plan(self, trial: int) -> list[TaskSpec]:
        once = str(self.root / f"hog-once-{trial}")
        specs = noops(self.opts.tasks - 2, self.rng)
        specs.insert(1, TaskSpec("hog", {"mib": 400, "step_mib": 32, "hold_s": 3, "once": once}))
        specs.insert(3, TaskSpec("hang", {}, expect="failed", timeout_s=1))
        return specs

    def fault(self, trial: int, ids: list[str]) -> bool:
        # The faults are the tasks themselves: seen when the child running each was
        # killed (restarts by reason memory and timeout).
        sup = self.supervisors[0]
        name = "morag_worker_child_restarts_total"
        before = self._restarts(sup, name)
        deadline = time.monotonic() + self.opts.window_s
        while time.monotonic() < deadline:
            now = self._restarts(sup, name)
            if now["memory"] > before["memory"] and now["timeout"] > before["timeout"]:
                return True
            time.sleep(0.2)
        return False

    @staticmethod
    def _restarts(sup: Supervisor, name: str) -> dict[str, float]:
        from prometheus_client.parser import text_string_to_metric_families

        found = {"memory": 0.0, "timeout": 0.0}
        with contextlib.suppress(requests.RequestException):
            for family in text_string_to_metric_families(sup.get("/metrics").text):
                for s in family.samples:
                    if s.name == name and s.labels.get("reason") in found:
                        found[s.labels["reason"]] = s.value
        return found

    def started(self, ids: list[str], at_least: int) -> bool:
        return True  # the hog and the hang are the fault: count from submission


class WorkerDiskFull(Kind):
    """The supervisor's work dir (a small tmpfs) fills up while tasks with input files
    arrive; space comes back after ``--disk-full-seconds``."""

    name = "disk-worker"
    needs = "root"

    def setup(self) -> None:
        disk = small_disk(self.root / "work", "16m")
        self.disk = disk.__enter__()
        self.cleanups.append(lambda: disk.__exit__(None, None, None))
        server = self.add_server()
        self.add_supervisor(server.url, "--work-dir", str(self.disk), "--min-free-disk", "0")

    def plan(self, trial: int) -> list[TaskSpec]:
        specs = noops(self.opts.tasks, self.rng)
        for spec in specs:
            spec.input_bytes = 256 * 1024
        return specs

    def fault(self, trial: int, ids: list[str]) -> bool:
        sup = self.supervisors[0]
        before = sup.metric("morag_worker_infrastructure_failures_total")
        fillers = []
        paused = False
        deadline = time.monotonic() + self.opts.disk_full_s
        while time.monotonic() < deadline:
            # full all along: space a finished task frees (its work dir) is taken again
            fillers.append(self.disk / f"filler-{len(fillers)}")
            fill(fillers[-1])
            paused = paused or sup.metric("morag_worker_leasing_paused") == 1
            time.sleep(0.05)
        for filler in fillers:
            filler.unlink()
        return paused or sup.metric("morag_worker_infrastructure_failures_total") > before


class ServerDiskFull(Kind):
    """The server's data dir (a small tmpfs holding SQLite and the files) fills up:
    writes answer 507 until space comes back after ``--disk-full-seconds``."""

    name = "disk-server"
    needs = "root"

    def setup(self) -> None:
        disk = small_disk(self.root / "data", "64m")
        self.disk = disk.__enter__()
        self.cleanups.append(lambda: disk.__exit__(None, None, None))
        server = self.add_server("--min-free-disk-bytes", "1048576", data_dir=self.disk)
        self.add_supervisor(server.url)

    def fault(self, trial: int, ids: list[str]) -> bool:
        assert self.user is not None
        filler = self.disk / "filler"
        fill(filler)
        refused = 0
        deadline = time.monotonic() + self.opts.disk_full_s
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException):
                reply = self.user.session.post(
                    f"{self.user.base}/api/v1/tasks",
                    data={"task_type": "noop", "parameters": "{}"},
                    files={"files": ("probe.bin", os.urandom(2 << 20), "application/octet-stream")},
                    timeout=10,
                )
                if reply.status_code == 507:
                    refused += 1
                elif reply.status_code == 201:  # acknowledged: it must not be lost either
                    ids.append(str(reply.json()["task_id"]))
            time.sleep(0.3)
        filler.unlink()
        return refused > 0


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


def missing(needs: str) -> str:
    """Why this machine cannot run a kind that ``needs`` something, or ''."""
    if needs == "root":
        return can_mount()
    if needs == "initdb" and not (shutil.which("initdb") and shutil.which("pg_ctl")):
        return "initdb/pg_ctl not found"
    if needs == "postgres":
        try:
            import psycopg

            psycopg.connect(PG_URL, connect_timeout=3).close()
        except Exception as exc:
            return f"PostgreSQL not reachable at {PG_URL}: {str(exc).strip()[:100]}"
    return ""


# ---- the campaign ----------------------------------------------------------------------------


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
            if STOP.is_set() or (until is not None and trial and time.monotonic() > until):
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
        log(f"{signal.Signals(signum).name}: stopping after this trial; the table follows")
        STOP.set()

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
