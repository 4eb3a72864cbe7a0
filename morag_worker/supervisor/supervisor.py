"""The supervisor's main loop.

One synchronous loop owns the order of things; threads only feed its inbox (leased
tasks, finished transfers, lost leases) and children write to their pipes. Each pass
reads like a to-do list::

    handle signals → reap children → enforce deadlines → enforce memory and liveness
    limits → recycle one child → keep the pool full → check the disk → dispatch ready
    tasks → wait for the next event or due time, handle what arrived → tell systemd

State has one owner each: the pool owns the slots, the lease book owns held tasks and
their stages, the :class:`RunState` is this loop's. Helpers get the collaborators they
use; a helper's verdict (a child's death) is acted on here. Signal handlers only record
the signal number (and wake the loop through the inbox's wake-up descriptor);
``handle_signals`` acts on it.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import time
from collections import deque
from multiprocessing import connection as mp_connection
from pathlib import Path
from typing import Any

from loguru import logger

from morag_worker import __version__
from morag_worker.client import ServerError, Unreachable
from morag_worker.config import SupervisorConfig
from morag_worker.links.select import make_link
from morag_worker.observability import sdnotify
from morag_worker.observability.health import HealthServer
from morag_worker.observability.metrics import SupervisorMetrics
from morag_worker.processors.base import load_plugins, registered_types
from morag_worker.protocol import PROTOCOL_VERSION, RegisterRequest, TaskSpec
from morag_worker.supervisor.admission import admitted
from morag_worker.supervisor.book import Held, LeaseBook
from morag_worker.supervisor.devices import Nvml
from morag_worker.supervisor.disk import DiskGuard
from morag_worker.supervisor.handback import Handback
from morag_worker.supervisor.heartbeat import Heartbeater
from morag_worker.supervisor.inbox import Inbox
from morag_worker.supervisor.layout import describe_devices, plan_children
from morag_worker.supervisor.leaser import Leaser
from morag_worker.supervisor.lifecycle import ChildLifecycle
from morag_worker.supervisor.placement import allowed_cpus, supervisor_cpus
from morag_worker.supervisor.pool import ChildPool, Slot
from morag_worker.supervisor.recent import RecentErrors
from morag_worker.supervisor.registration import FatalStartup, Registrar, host_name
from morag_worker.supervisor.routing import Router
from morag_worker.supervisor.status import RunState, StatusViews
from morag_worker.supervisor.tasks import FlowSettings, TaskFlow
from morag_worker.supervisor.transfers import Transfers
from morag_worker.supervisor.watchdog import Watchdog

__all__ = ["FatalStartup", "Supervisor"]

#: GIL switch interval for the supervisor process (the default is 5 ms).
GIL_SWITCH_S = 0.0005
#: Longest the loop sleeps: memory samples are due every second, and an idle loop that
#: wakes once a second costs next to nothing.
MAX_WAIT_S = 1.0
#: Slice of the wait while children work or a stop is draining: progress, deadlines and
#: kills are seen within this.
BUSY_WAIT_S = 0.2
#: The work dir's free space is read this often.
DISK_CHECK_S = 2.0
#: Time the shutdown gives uploads of finished tasks before it releases what is left.
FINAL_UPLOAD_S = 10.0


class Supervisor:
    def __init__(self, config: SupervisorConfig, nvml: Nvml) -> None:
        self.config = config
        self.nvml = nvml
        load_plugins(list(config.plugins))
        self.metrics = SupervisorMetrics(config.worker_id)
        self.pool = ChildPool(
            plan_children(config, nvml), config.max_tasks_per_child, config.quarantine_probe_s
        )
        self.router = Router(config.pool_types, {s.pool for s in self.pool.slots.values()})
        #: The server, whichever protocol it speaks (``--server-protocol``).
        self.link = make_link(config, self.task_types(), self.metrics.request)
        self.watchdog = Watchdog(self.pool, nvml, config)
        self.inbox = Inbox()
        self.book = LeaseBook()
        self.errors = RecentErrors()
        self.signals: deque[int] = deque()
        self.own_work_root = config.work_dir is None
        self.work_root = Path(config.work_dir or tempfile.mkdtemp(prefix="morag-work-"))
        self.work_root.mkdir(parents=True, exist_ok=True)
        self.disk = DiskGuard(self.work_root, 0)
        self.run_state = RunState(config.worker_id, config.worker_type)
        self.fast_stop = False
        #: Set once shutdown stops the children: their unfinished tasks are given back.
        self.children_stopped = False
        self.lease_ttl_s = 30.0
        self.max_result_bytes = config.max_result_bytes
        self.next_disk_check = 0.0
        self.lifecycle = ChildLifecycle(
            self.pool, self.book, self.watchdog, self.metrics, self.errors
        )
        self.handback = Handback(self.link, self.book)
        self.views = StatusViews(
            self.run_state,
            self.pool,
            self.book,
            self.watchdog,
            nvml,
            self.disk,
            self.errors,
            self.metrics,
        )
        self.http: HealthServer | None = None
        self.flow: TaskFlow | None = None
        self.leaser: Leaser | None = None
        self.heartbeater: Heartbeater | None = None
        self.transfers: Transfers | None = None

    # ---- start -------------------------------------------------------------------------------

    def task_types(self) -> list[str]:
        """Every type this worker's children can run (what it registers)."""
        return self.router.served_types(registered_types())

    def lease_types(self) -> list[str]:
        """The types to lease now: none while this worker's disk is in trouble; only
        types some child that is not quarantined can run; GPU types only while a GPU
        child has room (admission)."""
        if self.disk.problem:
            return []
        slots = list(self.pool.slots.values())
        runnable = [
            t
            for t in self.task_types()
            if any(s.pool in self.router.pools_for(t) and s.state != "quarantined" for s in slots)
        ]
        return admitted(runnable, self.router, slots, self.watchdog)

    def start_http(self) -> None:
        """Serve /health, /ready, /status, /metrics; a port in use is fatal (exit 2)."""
        cfg = self.config
        try:
            self.http = HealthServer(
                cfg.health_host,
                cfg.health_port,
                self.metrics.registry,
                self.views.health,
                self.views.ready,
                self.views.status,
                cfg.status_token,
            )
        except OSError as exc:
            raise FatalStartup(
                f"cannot serve the health endpoint on {cfg.health_host}:{cfg.health_port}: "
                f"{exc.strerror or exc}; choose another --health-port (0 picks a free one)"
            ) from None
        self.http.start()
        logger.info("health endpoint on http://{}:{}/health", cfg.health_host, self.http.port)

    def register(self) -> bool:
        """Register (retrying while the server is unreachable); False if stopped first."""
        devices = describe_devices(
            self.nvml, sorted({s.gpu for s in self.pool.slots.values() if s.gpu is not None})
        )
        body = RegisterRequest(
            worker_id=self.config.worker_id,
            host=host_name(),
            worker_type=self.config.worker_type,  # type: ignore[arg-type]
            task_types=self.task_types(),
            capacity=self.pool.capacity(),
            devices=devices,
            version=__version__,
            protocol_version=PROTOCOL_VERSION,
            pid=os.getpid(),
        )
        registrar = Registrar(self.link, body, self.config.worker_id_explicit, self._sleep)
        reply = registrar.register()
        if reply is None:
            return False
        self.metrics.identify(reply.worker_id)
        self.run_state.worker_id = reply.worker_id
        self.lease_ttl_s = reply.lease_ttl_s
        if reply.max_result_bytes:  # a result the server would refuse fails here, named
            self.max_result_bytes = min(self.max_result_bytes, reply.max_result_bytes - 4096)
        self.run_state.registered = True
        self.run_state.status_reports = reply.worker_status
        return True

    def _sleep(self, seconds: float) -> bool:
        """Sleep while handling signals; False once a stop signal arrived."""
        end = time.monotonic() + seconds
        while time.monotonic() < end and not self.run_state.draining:
            self.handle_signals()
            time.sleep(min(BUSY_WAIT_S, max(0.0, end - time.monotonic())))
        self.handle_signals()
        return not self.run_state.draining

    def start_threads(self) -> None:
        self.transfers = Transfers(self.link, self.inbox, self.transfer_cpus())
        report = self.views.report if self.run_state.status_reports else None
        self.heartbeater = Heartbeater(
            self.link, self.book, self.inbox, self.lease_ttl_s / 3, report
        )
        self.leaser = Leaser(
            self.link,
            self.book,
            self.inbox,
            wanted=self.wanted,
            task_types=self.lease_types,
            make_held=self.make_held,
            wait_s=self.config.poll_interval_s,
            on_success=self.metrics.last_lease.set_to_current_time,
        )
        self.flow = TaskFlow(
            FlowSettings(self.config.task_timeout_cap_s, self.max_result_bytes),
            self.book,
            self.pool,
            self.router,
            self.transfers,
            self.handback,
            self.disk,
            self.metrics,
            self.errors,
            stop_requested=self.stop_requested,
            wake_leaser=self.leaser.wake.set,
        )
        self.heartbeater.start()
        self.leaser.start()

    def make_held(self, spec: TaskSpec) -> Held:
        work_dir = self.work_root / f"{spec.task_id[:64]}-{spec.attempt}"
        return Held(spec=spec, work_dir=work_dir)

    def wanted(self) -> int:
        """How many tasks to lease now (0 = not yet).

        The target is one task per child that serves (or is booting) plus ``--prefetch``;
        nothing while no child serves, so a fully quarantined worker does not lease tasks
        only to give them back. A refill is asked for when a child would otherwise wait
        (nothing ready to start) or when at least half the target is missing, so a busy
        host leases in batches instead of one by one.
        """
        if self.stop_requested() or self.disk.problem:
            return 0
        serving = len(self.pool.serving())
        if serving == 0:
            return 0
        target = serving + self.config.prefetch
        deficit = target - len(self.book)
        if deficit <= 0:
            return 0
        ready = self.flow.ready if self.flow is not None else ()
        if not ready or deficit >= max(1, target // 2):
            return deficit
        return 0

    # ---- the loop ----------------------------------------------------------------------------

    def run(self) -> int:
        # Several threads hand work to each other here (lease → main loop → upload); a
        # short GIL switch interval keeps each hand-off from waiting out the 5 ms default.
        sys.setswitchinterval(GIL_SWITCH_S)
        self.install_signal_handlers()
        try:
            return self._run()
        except FatalStartup as exc:
            logger.error("{}", exc)
            return 2
        finally:
            self.stop_http()
            if self.own_work_root:
                shutil.rmtree(self.work_root, ignore_errors=True)

    def _run(self) -> int:
        self.disk.min_free_bytes = self.config.min_free_disk.resolve(
            shutil.disk_usage(self.work_root).total
        )
        self.start_http()
        if not self.register():
            return 0
        for slot in self.pool.slots.values():
            self.pool.start(slot)
            self._announce(slot)
        self.watchdog.sample()  # GPU readings for admission before the first lease call
        self.check_disk(time.monotonic())
        self.start_threads()
        while not self.run_state.draining:
            self.tick()
        self.shutdown()
        return 0

    def transfer_cpus(self) -> set[int] | None:
        """The CPUs no CPU child is pinned to, for the transfer threads (None: any)."""
        children = [
            set(s.spec.cpus) for s in self.pool.slots.values() if s.pool == "cpu" and s.spec.cpus
        ]
        return supervisor_cpus(allowed_cpus(), children)

    def tick(self) -> None:
        now = self.run_state.last_tick = time.monotonic()
        self.handle_signals()
        self.reap_children()
        self._flow().enforce_deadlines(self.lifecycle.kill)
        self.lifecycle.enforce_limits()
        self.lifecycle.recycle_step()
        self.keep_pool_full()
        self.check_disk(now)
        self._flow().dispatch()
        self.wait_for_events(self.next_wait_s())
        self.refresh_state()
        self.views.notify_systemd()

    def reap_children(self) -> None:
        """Act on children that exited: first on what they sent before going (their last
        result), then on the lifecycle's verdict for the task they held."""
        flow = self._flow()
        for gone in self.pool.exited():
            for event in gone.events:
                self._child_event(gone.slot, event)
            death = self.lifecycle.judge_exit(gone, stopping=self.children_stopped)
            if death.held is not None and death.error is not None:
                flow.fail(death.held, death.error)

    def _announce(self, slot: Slot) -> None:
        """One line per child at start: what it is and what it runs."""
        device = f"GPU {slot.gpu}" if slot.gpu is not None else "CPU"
        cores = _ranges(sorted(slot.spec.cpus)) or "any"
        types = [t for t in self.task_types() if slot.pool in self.router.pools_for(t)]
        logger.info(
            "child {}: {}, cores {}, task types {}",
            slot.name,
            device,
            cores,
            ",".join(types) or "none",
            child=slot.name,
        )

    def keep_pool_full(self) -> None:
        now = time.monotonic()
        for slot in self.pool.due_to_start(now):
            probing = slot.state == "quarantined"
            self.pool.start(slot)
            if probing:
                logger.info("probing quarantined child {} with a fresh process", slot.name)
            elif slot.restarts:
                logger.info("restarted child {} (restart {})", slot.name, slot.restarts)

    def check_disk(self, now: float) -> None:
        if now < self.next_disk_check:
            return
        self.next_disk_check = now + DISK_CHECK_S
        before = self.disk.problem
        problem = self.disk.check(now)
        if problem and problem != before:
            logger.error("not leasing: {}", problem)
            self.errors.note("infrastructure", problem)
        elif before and not problem:
            logger.info("leasing again: the work dir is healthy")
            if self.leaser is not None:
                self.leaser.wake.set()

    def next_wait_s(self) -> float:
        """How long the loop may sleep: until the next thing that is due, at most a
        second (the watchdog's sampling); a fifth of one while children work."""
        busy = any(s.state in ("busy", "starting", "stopping") for s in self.pool.slots.values())
        wait = BUSY_WAIT_S if busy or self.book.count("uploading") else MAX_WAIT_S
        now = time.monotonic()
        due = [self.watchdog.next_sample, self.next_disk_check]
        due += [s.restart_at for s in self.pool.slots.values() if s.state == "down"]
        due += [s.probe_at for s in self.pool.slots.values() if s.state == "quarantined"]
        return max(0.0, min([wait, *(d - now for d in due)]))

    def wait_for_events(self, timeout_s: float) -> None:
        """Wait until a child or a thread has something (or the timeout), then handle
        everything that arrived: child events first, then the inbox's items."""
        conns = self.pool.connections()
        ready = mp_connection.wait([*conns, self.inbox.waitable], timeout_s)
        for source in ready:
            slot = conns.get(source)
            if slot is not None:
                self._read_child(source, slot)
        for item in self.inbox.drain():
            self._flow().handle(item)
        if ready:
            self._flow().dispatch()  # a leased task or a freed child: start work now

    def _read_child(self, conn: Any, slot: Slot) -> None:
        try:
            while conn.poll():
                self._child_event(slot, conn.recv())
        except (EOFError, OSError):
            self.pool.close_conn(slot)  # gone; the reaper decides what it means
        except Exception as exc:  # garbage on the pipe: the child is not to be trusted
            logger.error("child {} sent an unreadable message ({}); killing it", slot.name, exc)
            self.errors.note("child_protocol", f"{type(exc).__name__}: {exc}", child=slot.name)
            self.lifecycle.kill(slot, "unreadable")

    def _child_event(self, slot: Slot, event: object) -> None:
        try:
            self._flow().on_child_event(slot, event)
        except Exception as exc:
            logger.opt(exception=exc).error("handling an event of child {} failed", slot.name)
            self.lifecycle.kill(slot, "unreadable")

    def refresh_state(self) -> None:
        run = self.run_state
        run.done = self._flow().done
        run.paused = self.disk.problem
        if self.leaser is not None and self.heartbeater is not None:
            run.auth_failed = self.leaser.auth_failed
            lease_ok = time.monotonic() - (time.time() - self.leaser.last_success)
            run.server_ok_at = max(self.heartbeater.last_ok, lease_ok)
        run.task_types = self.task_types()
        run.lease_types = self.lease_types()

    def _flow(self) -> TaskFlow:
        assert self.flow is not None, "start_threads() creates the task flow"
        return self.flow

    # ---- signals -----------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._record_signal)
        signal.set_wakeup_fd(self.inbox.wakeup_fd(), warn_on_full_buffer=False)

    def _record_signal(self, signum: int, _frame: Any) -> None:
        self.signals.append(signum)  # only record: the loop acts (handle_signals)

    def stop_requested(self) -> bool:
        """Draining, or a stop signal is waiting to be handled: start nothing new."""
        return self.run_state.draining or any(s != signal.SIGHUP for s in list(self.signals))

    def handle_signals(self) -> None:
        while self.signals:
            signum = self.signals.popleft()
            if signum == signal.SIGHUP:
                self.handle_sighup()
            elif self.run_state.draining:
                self.fast_stop = True
                logger.warning("second stop signal: stopping now")
            else:
                self.run_state.draining = True
                logger.info("stop signal: draining (up to {} s)", self.config.drain_timeout_s)

    def handle_sighup(self) -> None:
        logger.info("SIGHUP: recycling children one at a time")
        self.lifecycle.rolling_recycle()

    # ---- shutdown ----------------------------------------------------------------------------

    def shutdown(self) -> None:
        """The stop sequence, time-boxed by ``--drain-timeout``:

        1. stop leasing;  2. release tasks not yet started;  3. let running tasks finish
        while their leases keep renewing;  4. ask children to exit, then TERM, then KILL;
        5. let finished results upload;  6. release what did not finish;  7. unregister,
        stop the threads and close the link;  8. stop the HTTP endpoint (``run``).

        A server that cannot take tasks back (``link.gives_back`` false: MoRAG's
        remote-jobs API) releases nothing: step 3 runs the unstarted tasks too, and step
        6 reports what did not finish as failed, since nobody else would ever run it.
        """
        assert self.leaser is not None and self.heartbeater is not None
        assert self.transfers is not None
        sdnotify.stopping("draining")
        self.leaser.stop_event.set()  # 1
        self.handback.release_unstarted("worker draining")  # 2
        deadline = time.monotonic() + self.config.drain_timeout_s
        while self.handback.running() and time.monotonic() < deadline and not self.fast_stop:
            self.run_state.last_tick = time.monotonic()  # 3
            self.handle_signals()
            self.reap_children()
            self._flow().enforce_deadlines(self.lifecycle.kill)
            self.lifecycle.enforce_limits()
            self.wait_for_events(BUSY_WAIT_S)
            self.handback.release_unstarted("worker draining")
            self.refresh_state()
            self.views.notify_systemd()
            sdnotify.extend_timeout(int((BUSY_WAIT_S * 10) * 1_000_000))
        self.children_stopped = True
        self.pool.stop_all()  # 4
        self.reap_children()
        self.wait_for_events(0.05)
        end = time.monotonic() + FINAL_UPLOAD_S  # 5
        while self.handback.uploading() and time.monotonic() < end:
            self.wait_for_events(0.1)
        for held in self.handback.release_all("worker stopped before the task finished"):  # 6
            self._flow().fail(held, self.handback.unfinished(self.config.drain_timeout_s))
        self.heartbeater.stop_event.set()  # 7
        self.transfers.shutdown(timeout_s=2.0)
        try:
            self.link.unregister()
        except (ServerError, Unreachable) as exc:
            logger.warning("unregister failed: {}", exc)
        self.link.close()
        logger.info("stopped; {} tasks done", self._flow().done)

    def stop_http(self) -> None:
        if self.http is not None:
            self.http.stop()
            self.http = None


def _ranges(numbers: list[int]) -> str:
    """``[0, 1, 2, 5]`` → ``0-2,5``."""
    parts: list[str] = []
    for n in numbers:
        if parts and parts[-1].split("-")[-1] == str(n - 1):
            parts[-1] = f"{parts[-1].split('-')[0]}-{n}"
        else:
            parts.append(str(n))
    return ",".join(parts)
