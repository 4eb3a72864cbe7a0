"""Simulated workers and a producer for bench/fleet.py, speaking protocol v1 as the
supervisor does (docs/protocol.md):

- register once, then send the instance id the server issued on every call;
- one lease long-poll at a time (``wait_seconds`` = the supervisor's default
  ``--poll-interval``, 5 s), asking for as many tasks as there are free slots;
- one batched heartbeat every ``heartbeat_interval_s`` from the registration reply,
  renewing every held lease and carrying the status report (a busy worker's report
  changes with every task done, so the supervisor sends it with every beat);
- results batched as the supervisor's uploader batches them: a lone result lingers
  3 ms for others to join, up to 100 per call; a slot frees when its task is done, the
  lease is dropped from the heartbeats when the upload is acknowledged.

Every lease, submission and accepted result is written in a :class:`Ledger`, from which
the bench computes throughput, lease latency and double assignments.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field

from fleet_http import Conn

#: The supervisor's uploader linger (morag_worker/supervisor/transfers.py).
UPLOAD_LINGER_S = 0.003
#: Results per batched call (the protocol's limit).
MAX_BATCH = 100
#: The supervisor's default ``--poll-interval``: the longest a lease long-poll waits.
LEASE_WAIT_S = 5.0
NOOP_BODY = json.dumps({"task_type": "noop", "parameters": {}}).encode()


@dataclass
class Lease:
    worker: int
    token: str
    sent: float  # time.time() the lease call went out
    got: float  # its reply arrived
    expires: float  # lease_expires_at, server clock (the same host's)
    ended: float | None = None  # its result was acknowledged, or the lease was lost


@dataclass
class Ledger:
    """What the fleet saw; figures are taken over the measuring window."""

    leases: dict[str, list[Lease]] = field(default_factory=dict)
    submitted: dict[str, float] = field(default_factory=dict)
    accepted: Counter[str] = field(default_factory=Counter)
    calls: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    sent: int = 0  # submissions sent, answered or not
    first_leases: int = 0  # distinct tasks leased
    window: tuple[float, float] | None = None
    room: asyncio.Event = field(default_factory=asyncio.Event)
    #: Results acknowledged inside the window, and the window's lease latencies.
    done_in_window: int = 0
    calls_in_window: Counter[str] = field(default_factory=Counter)

    def measuring(self, now: float) -> bool:
        return self.window is not None and self.window[0] <= now <= self.window[1]

    def call(self, what: str, now: float) -> None:
        self.calls[what] += 1
        if self.measuring(now):
            self.calls_in_window[what] += 1

    def leased(self, task_id: str, lease: Lease) -> None:
        history = self.leases.setdefault(task_id, [])
        if not history:
            self.first_leases += 1
            self.room.set()
        history.append(lease)

    def done(self, task_id: str, token: str, completed: bool, now: float) -> None:
        for lease in self.leases.get(task_id, []):
            if lease.token == token:
                lease.ended = now
        if completed:
            self.accepted[task_id] += 1
            if self.measuring(now):
                self.done_in_window += 1

    def outstanding(self) -> int:
        """Submissions not yet leased: the producer keeps this bounded."""
        return self.sent - self.first_leases

    def lease_latencies(self) -> list[float]:
        """Per task leased in the window: from when it could first be handed out (the
        later of its submission and the lease call) to the lease reply."""
        assert self.window is not None
        out = []
        for task_id, history in self.leases.items():
            lease = history[0]
            if self.measuring(lease.got) and task_id in self.submitted:
                out.append(lease.got - max(lease.sent, self.submitted[task_id]))
        return out

    def double_assignments(self) -> int:
        """Tasks seen leased to two holders at once (the second lease arrived while the
        first was neither ended nor expired), or completed twice."""
        doubles = sum(1 for n in self.accepted.values() if n > 1)
        for history in self.leases.values():
            for first, second in itertools.pairwise(history):
                first_end = min(first.ended or first.expires, first.expires)
                if second.got < first_end and second.token != first.token:
                    doubles += 1
        return doubles


class SimWorker:
    """One supervisor host: ``slots`` children that finish a task after ``work_s``."""

    def __init__(
        self, n: int, host: str, port: int, key: str, ledger: Ledger, slots: int, work_s: float
    ) -> None:
        self.n = n
        self.worker_id = f"fleet-{n}"
        self.headers = {"Authorization": f"Bearer {key}", "User-Agent": "morag-worker"}
        self.lease_conn = Conn(host, port, self.headers)
        self.ctl_conn = Conn(host, port, self.headers)  # heartbeats and results
        self.ledger = ledger
        self.slots = slots
        self.work_s = work_s
        self.busy = 0
        self.held: dict[str, str] = {}  # task_id -> lease token, until acknowledged
        self.pending: list[dict[str, object]] = []
        self.slot_free = asyncio.Event()
        self.result_ready = asyncio.Event()
        self.tasks_done = 0
        self.interval_s = 10.0
        self.started = time.time()
        self._bodies = {
            want: json.dumps(
                {"max_tasks": want, "wait_seconds": LEASE_WAIT_S, "task_types": ["noop"]}
            ).encode()
            for want in range(1, slots + 1)
        }

    async def register(self) -> None:
        reply = await self.ctl_conn.json(
            "POST",
            "/api/v1/workers/register",
            {
                "worker_id": self.worker_id,
                "host": f"fleet-host-{self.n}",
                "task_types": ["noop"],
                "capacity": self.slots,
                "version": "fleet-bench",
                "protocol_version": 1,
                "pid": 100000 + self.n,
            },
        )
        self.interval_s = float(reply["heartbeat_interval_s"])
        for conn in (self.lease_conn, self.ctl_conn):
            conn.headers = {**self.headers, "X-Morag-Worker-Instance": reply["instance_id"]}

    async def run(self) -> None:
        await asyncio.gather(self._leaser(), self._uploader(), self._heartbeater())

    def close(self) -> None:
        self.lease_conn.close()
        self.ctl_conn.close()

    async def _leaser(self) -> None:
        path = f"/api/v1/workers/{self.worker_id}/lease"
        loop = asyncio.get_running_loop()
        while True:
            want = self.slots - self.busy
            if want <= 0:
                self.slot_free.clear()
                await self.slot_free.wait()
                continue
            sent = time.time()
            status, raw = await self.lease_conn.request("POST", path, self._bodies[want])
            got = time.time()
            self.ledger.call("lease", got)
            if status != 200:
                self.ledger.errors[f"lease {status}"] += 1
                await asyncio.sleep(0.5)
                continue
            for task in json.loads(raw)["tasks"]:
                task_id, token = task["task_id"], task["lease_token"]
                self.ledger.leased(
                    task_id, Lease(self.n, token, sent, got, float(task["lease_expires_at"]))
                )
                self.held[task_id] = token
                self.busy += 1
                if self.work_s > 0:
                    loop.call_later(self.work_s, self._finish, task_id, token)
                else:
                    self._finish(task_id, token)

    def _finish(self, task_id: str, token: str) -> None:
        """The child is done: the slot frees now, the result queues for upload."""
        self.busy -= 1
        self.tasks_done += 1
        self.slot_free.set()
        now = time.time()
        self.pending.append(
            {
                "task_id": task_id,
                "lease_token": token,
                "status": "completed",
                "result": {"content": "ok", "metadata": {"started_at": now}, "chunks": []},
                "timings": {"download_s": 0.0, "process_s": self.work_s},
            }
        )
        self.result_ready.set()

    async def _uploader(self) -> None:
        path = f"/api/v1/workers/{self.worker_id}/results"
        while True:
            await self.result_ready.wait()
            self.result_ready.clear()
            if not self.pending:
                continue  # sent with the previous batch
            if len(self.pending) == 1:
                await asyncio.sleep(UPLOAD_LINGER_S)  # let results finishing now join
            batch, self.pending = self.pending[:MAX_BATCH], self.pending[MAX_BATCH:]
            if self.pending:
                self.result_ready.set()
            status, raw = await self.ctl_conn.request(
                "POST", path, json.dumps({"results": batch}).encode()
            )
            got = time.time()
            self.ledger.call("results", got)
            if status != 200:
                self.ledger.errors[f"results {status}"] += 1
                continue
            for outcome in json.loads(raw)["results"]:
                token = self.held.pop(outcome["task_id"], "")
                completed = outcome.get("state") == "completed"
                if not completed:
                    self.ledger.errors["result " + str(outcome.get("error", {}).get("code"))] += 1
                self.ledger.done(outcome["task_id"], token, completed, got)

    async def _heartbeater(self) -> None:
        path = f"/api/v1/workers/{self.worker_id}/heartbeat"
        await asyncio.sleep(random.uniform(0, self.interval_s))  # hosts start at random
        while True:
            leases = [
                {"task_id": task_id, "lease_token": token, "stage": "running"}
                for task_id, token in list(self.held.items())
            ]
            body = json.dumps({"leases": leases, "status": self._report()}).encode()
            status, raw = await self.ctl_conn.request("POST", path, body)
            got = time.time()
            self.ledger.call("heartbeat", got)
            if status != 200:
                self.ledger.errors[f"heartbeat {status}"] += 1
            else:
                reply = json.loads(raw)
                # A lease whose result was committed while the beat was on its way
                # comes back lost: the supervisor's race too, and harmless.
                for _ in reply["lost"] + reply["cancel"]:
                    self.ledger.call("lost in heartbeat", got)
            await asyncio.sleep(self.interval_s)

    def _report(self) -> dict[str, object]:
        """A status report of the supervisor's shape (docs/protocol.md, Status reports)."""
        held = list(self.held)
        children = [
            {
                "name": f"cpu-{i}",
                "pool": "cpu",
                "cores": [i],
                "state": "busy" if i < len(held) else "idle",
                "task_id": held[i] if i < len(held) else None,
                "task_type": "noop" if i < len(held) else None,
                "rss_bytes": 150_000_000,
                "tasks_done": self.tasks_done // self.slots,
            }
            for i in range(self.slots)
        ]
        return {
            "children": children,
            "draining": False,
            "tasks_done": self.tasks_done,
            "uptime_s": time.time() - self.started,
        }


class Producer:
    """Submits no-op tasks over ``conns`` (one submitter each), keeping at most
    ``ahead`` submitted tasks not yet leased, so the queue of claimable tasks stays
    short and the backlog the bench adds stays the only deep part of the queue."""

    def __init__(self, conns: list[Conn], ledger: Ledger, ahead: int) -> None:
        self.conns = conns
        self.ledger = ledger
        self.ahead = ahead
        self.paused = False

    async def run(self) -> None:
        await asyncio.gather(*(self._submitter(conn) for conn in self.conns))

    async def _submitter(self, conn: Conn) -> None:
        ledger = self.ledger
        while True:
            while self.paused or ledger.outstanding() >= self.ahead:
                ledger.room.clear()
                await ledger.room.wait()
            ledger.sent += 1
            sent = time.time()
            status, raw = await conn.request("POST", "/api/v1/tasks", NOOP_BODY)
            ledger.call("submit", time.time())
            if status != 201:
                ledger.sent -= 1
                ledger.errors[f"submit {status}"] += 1
                await asyncio.sleep(0.5)
                continue
            ledger.submitted[json.loads(raw)["task_id"]] = sent

    def resume(self) -> None:
        self.paused = False
        self.ledger.room.set()
