"""The supervisor's main loop.

One synchronous loop owns all state; threads only feed its inbox (leased tasks, child
events, finished transfers, lost leases). Each pass reads like a to-do list::

    handle signals → reap children → enforce deadlines → enforce memory and liveness
    limits → recycle one child → keep the pool full → dispatch ready tasks
    → wait for the inbox and handle what arrived → tell systemd

Signal handlers only record the signal number; ``handle_signals`` acts on it.
"""

from __future__ import annotations

import shutil
import signal
import socket
import sys
import tempfile
import time
from collections import deque
from multiprocessing import connection as mp_connection
from pathlib import Path
from typing import Any

from loguru import logger

from morag_worker import __version__
from morag_worker.client import ServerError, Unreachable, WorkerClient, backoff_s
from morag_worker.config import SupervisorConfig
from morag_worker.observability import sdnotify
from morag_worker.observability.metrics import SupervisorMetrics
from morag_worker.processors.base import load_plugins, registered_types
from morag_worker.protocol import PROTOCOL_VERSION, RegisterRequest, TaskSpec
from morag_worker.supervisor import handback
from morag_worker.supervisor.admission import admitted
from morag_worker.supervisor.devices import Nvml
from morag_worker.supervisor.inbox import Inbox
from morag_worker.supervisor.layout import describe_devices, plan_children
from morag_worker.supervisor.leaser import Leaser
from morag_worker.supervisor.leases import Heartbeater, Held, LeaseBook
from morag_worker.supervisor.lifecycle import ChildLifecycle
from morag_worker.supervisor.pool import ChildPool
from morag_worker.supervisor.routing import Router
from morag_worker.supervisor.status import StatusViews
from morag_worker.supervisor.tasks import TaskFlow
from morag_worker.supervisor.transfers import Transfers
from morag_worker.supervisor.watchdog import Watchdog

#: GIL switch interval for the supervisor process (the default is 5 ms).
GIL_SWITCH_S = 0.0005
#: Longest the loop waits for the inbox; bounds how late a signal or deadline is seen.
TICK_S = 0.2


class FatalStartup(Exception):
    """The supervisor cannot start (the server refused the key); exit code 2."""


class Supervisor:
    def __init__(self, config: SupervisorConfig, nvml: Nvml) -> None:
        self.config = config
        self.nvml = nvml
        load_plugins(list(config.plugins))
        self.metrics = SupervisorMetrics(config.worker_id)
        self.client = WorkerClient(
            config.server_url, config.api_key, config.worker_id, on_request=self.metrics.request
        )
        self.pool = ChildPool(plan_children(config, nvml), config.max_tasks_per_child)
        self.router = Router(config.pool_types, {s.pool for s in self.pool.slots.values()})
        self.watchdog = Watchdog(self.pool, nvml, config)
        self.inbox = Inbox()
        self.book = LeaseBook()
        self.ready: deque[str] = deque()
        self.signals: deque[int] = deque()
        self.work_root = Path(config.work_dir or tempfile.mkdtemp(prefix="morag-work-"))
        self.work_root.mkdir(parents=True, exist_ok=True)
        self.started = time.monotonic()
        self.last_tick = time.monotonic()
        self.registered = False
        self.draining = False
        self.fast_stop = False
        #: Set once shutdown stops the children: their unfinished tasks are given back.
        self.children_stopped = False
        self.lease_ttl_s = 30.0
        self.done = 0
        self.recent_errors: deque[dict[str, Any]] = deque(maxlen=20)
        self.flow = TaskFlow(self)
        self.lifecycle = ChildLifecycle(self)
        self.views = StatusViews(self)
        self.leaser: Leaser | None = None
        self.heartbeater: Heartbeater | None = None
        self.transfers: Transfers | None = None

    # ---- start -------------------------------------------------------------------------------

    def task_types(self) -> list[str]:
        """Every type this worker's children can run (what it registers)."""
        return self.router.served_types(registered_types())

    def lease_types(self) -> list[str]:
        """The types to lease now: GPU types only while a GPU child has room (admission)."""
        return admitted(
            self.task_types(), self.router, list(self.pool.slots.values()), self.watchdog
        )

    def note_error(self, kind: str, message: str, **where: str) -> None:
        """Remember an error for ``/status`` (the last 20)."""
        self.recent_errors.append(
            {"at": time.time(), "type": kind, "message": message[:500], **where}
        )

    def register(self) -> None:
        """Register, retrying with backoff while the server is unreachable."""
        body = RegisterRequest(
            worker_id=self.config.worker_id,
            host=socket.gethostname(),
            worker_type=self.config.worker_type,  # type: ignore[arg-type]
            task_types=self.task_types(),
            capacity=self.pool.capacity(),
            devices=describe_devices(
                self.nvml, sorted({s.gpu for s in self.pool.slots.values() if s.gpu is not None})
            ),
            version=__version__,
            protocol_version=PROTOCOL_VERSION,
        )
        attempt = 0
        while not self.draining:
            try:
                reply = self.client.register(body, retry_for_s=0)
            except ServerError as exc:
                if exc.status in (401, 403):
                    raise FatalStartup(
                        f"the server refused this worker's API key (HTTP {exc.status}: "
                        f"{exc.message}); check MORAG_API_KEY or --api-key-file"
                    ) from None
                if exc.status < 500:
                    raise FatalStartup(f"registration refused: {exc}") from None
                logger.warning("registration failed, retrying: {}", exc)
            except Unreachable as exc:
                logger.warning("server unreachable, retrying: {}", exc)
            else:
                self.lease_ttl_s = reply.lease_ttl_s
                self.registered = True
                logger.info(
                    "registered with {} (server {}, protocol {}, lease {} s)",
                    self.config.server_url,
                    reply.server_version or "0.1.0",
                    reply.protocol_version,
                    reply.lease_ttl_s,
                )
                return
            self._sleep_handling_signals(backoff_s(attempt, base_s=0.5, cap_s=30.0))
            attempt += 1

    def _sleep_handling_signals(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not self.draining:
            self.handle_signals()
            time.sleep(min(TICK_S, max(0.0, end - time.monotonic())))

    def start_threads(self) -> None:
        self.transfers = Transfers(self.client, self.inbox, self.lease_ttl_s)
        self.heartbeater = Heartbeater(self.client, self.book, self.inbox, self.lease_ttl_s / 3)
        self.leaser = Leaser(
            self.client,
            self.book,
            self.inbox,
            wanted=self.wanted,
            task_types=self.lease_types,
            make_held=self.make_held,
            wait_s=self.config.poll_interval_s,
            on_success=self.metrics.last_lease.set_to_current_time,
        )
        self.heartbeater.start()
        self.leaser.start()

    def make_held(self, spec: TaskSpec) -> Held:
        work_dir = self.work_root / f"{spec.task_id}-{spec.attempt}"
        return Held(spec=spec, work_dir=work_dir)

    def wanted(self) -> int:
        """How many tasks to lease now (0 = not yet).

        The target is one task per healthy child plus ``--prefetch``. A refill is asked for
        when a child would otherwise wait (nothing ready to start) or when at least half
        the target is missing, so a busy host leases in batches instead of one by one.
        """
        if self.draining:
            return 0
        target = len(self.pool.healthy()) + self.config.prefetch
        deficit = target - len(self.book)
        if deficit <= 0:
            return 0
        if not self.ready or deficit >= max(1, target // 2):
            return deficit
        return 0

    # ---- the loop ----------------------------------------------------------------------------

    def run(self) -> int:
        # Several threads hand work to each other here (lease → main loop → upload); a
        # short GIL switch interval keeps each hand-off from waiting out the 5 ms default.
        sys.setswitchinterval(GIL_SWITCH_S)
        self.install_signal_handlers()
        self.views.start_http()
        try:
            self.register()
        except FatalStartup as exc:
            logger.error("{}", exc)
            self.views.stop_http()
            return 2
        if self.draining:
            self.views.stop_http()
            return 0
        for slot in self.pool.slots.values():
            self.pool.start(slot)
        self.watchdog.sample()  # GPU readings for admission before the first lease call
        self.start_threads()
        while not self.draining:
            self.tick()
        self.shutdown()
        return 0

    def tick(self) -> None:
        self.last_tick = time.monotonic()
        self.handle_signals()
        self.lifecycle.reap_children()
        self.flow.enforce_deadlines()
        self.lifecycle.enforce_limits()
        self.lifecycle.recycle_step()
        self.keep_pool_full()
        self.flow.dispatch()
        self.wait_for_inbox(TICK_S)
        self.views.notify_systemd()

    def keep_pool_full(self) -> None:
        now = time.monotonic()
        for slot in self.pool.due_to_start(now):
            self.pool.start(slot)
            if slot.restarts:
                logger.info("restarted child {} (restart {})", slot.name, slot.restarts)

    def wait_for_inbox(self, timeout_s: float) -> None:
        """Wait until a child or a thread has something (or the timeout), then handle
        everything that arrived: child events first, then the inbox's items."""
        conns = self.pool.connections()
        ready = mp_connection.wait([*conns, self.inbox.waitable], timeout_s)
        for source in ready:
            slot = conns.get(source)
            if slot is not None:
                self._read_child(source, slot)
        items = self.inbox.drain()
        for item in items:
            self.flow.handle(item)
        if ready:
            self.flow.dispatch()  # a leased task or a freed child: start work now

    def _read_child(self, conn: Any, slot: Any) -> None:
        try:
            while conn.poll():
                self.flow.handle(("child", conn.recv()))
        except (EOFError, OSError):
            self.pool.close_conn(slot)  # gone; the reaper decides what it means

    # ---- signals -----------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._record_signal)

    def _record_signal(self, signum: int, _frame: Any) -> None:
        self.signals.append(signum)  # only record: the loop acts (handle_signals)

    def handle_signals(self) -> None:
        while self.signals:
            signum = self.signals.popleft()
            if signum == signal.SIGHUP:
                self.handle_sighup()
            elif self.draining:
                self.fast_stop = True
                logger.warning("second stop signal: stopping now")
            else:
                self.draining = True
                logger.info("stop signal: draining (up to {} s)", self.config.drain_timeout_s)

    def handle_sighup(self) -> None:
        logger.info("SIGHUP: recycling children one at a time")
        self.lifecycle.rolling_recycle()

    # ---- shutdown ----------------------------------------------------------------------------

    def shutdown(self) -> None:
        """The stop sequence, time-boxed by ``--drain-timeout``:

        1. stop leasing;  2. release tasks not yet started;  3. let running tasks finish
        while their leases keep renewing;  4. ask children to exit, then TERM, then KILL;
        5. release what did not finish;  6. unregister and close the client;
        7. stop the HTTP endpoint.
        """
        sdnotify.stopping("draining")
        assert self.leaser is not None and self.heartbeater is not None
        self.leaser.stop_event.set()
        handback.release_unstarted(self, "worker draining")
        deadline = time.monotonic() + self.config.drain_timeout_s
        while handback.running(self) and time.monotonic() < deadline and not self.fast_stop:
            self.last_tick = time.monotonic()
            self.handle_signals()
            self.lifecycle.reap_children()
            self.flow.enforce_deadlines()
            self.lifecycle.enforce_limits()
            self.wait_for_inbox(TICK_S)
            handback.release_unstarted(self, "worker draining")
            self.views.notify_systemd()
            sdnotify.extend_timeout(int((TICK_S * 10) * 1_000_000))
        self.children_stopped = True
        self.pool.stop_all()
        self.lifecycle.reap_children()
        self.wait_for_inbox(0.05)
        handback.finish_uploads(self, timeout_s=10.0)
        handback.release_all(self, "worker stopped before the task finished")
        self.heartbeater.stop_event.set()
        try:
            self.client.unregister(retry_for_s=2.0)
        except (ServerError, Unreachable) as exc:
            logger.warning("unregister failed: {}", exc)
        self.client.close()
        self.views.stop_http()
        shutil.rmtree(self.work_root, ignore_errors=True) if not self.config.work_dir else None
        logger.info("stopped; {} tasks done", self.done)
