"""Kinds of fault that starve a process: network cuts three ways, a memory limit and a
hung task, full disks on the worker and on the server."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import requests

from chaoskit.infra import fill, small_disk
from chaoskit.procs import Supervisor
from chaoskit.proxy import TcpProxy
from chaoskit.trial import Kind, TaskSpec, noops


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
    """The supervisor's work dir (a small tmpfs) is full when tasks with input files
    arrive, and stays full (space a finished task frees is taken again) for
    ``--disk-full-seconds``: their downloads fail, they must go back unattempted. (Filled
    before the submission, not once a few are leased: small tasks on two children are
    often all downloaded by then, and the fault would meet nothing.)"""

    name = "disk-worker"
    needs = "root"

    def setup(self) -> None:
        disk = small_disk(self.root / "work", "16m")
        self.disk = disk.__enter__()
        self.cleanups.append(lambda: disk.__exit__(None, None, None))
        server = self.add_server()
        self.add_supervisor(server.url, "--work-dir", str(self.disk), "--min-free-disk", "0")
        self.fillers: list[Path] = []

    def plan(self, trial: int) -> list[TaskSpec]:
        specs = noops(self.opts.tasks, self.rng)
        for spec in specs:
            spec.input_bytes = 256 * 1024
        return specs

    def _fill(self) -> None:
        self.fillers.append(self.disk / f"filler-{len(self.fillers)}")
        fill(self.fillers[-1])

    def prepare(self, trial: int) -> None:
        self.failures = self.supervisors[0].metric("morag_worker_infrastructure_failures_total")
        self._fill()

    def started(self, ids: list[str], at_least: int) -> bool:
        return True  # the disk is full already: the fault starts with the submission

    def fault(self, trial: int, ids: list[str]) -> bool:
        sup = self.supervisors[0]
        paused = False
        deadline = time.monotonic() + self.opts.disk_full_s
        while time.monotonic() < deadline:
            self._fill()  # full all along: space a finished task frees is taken again
            paused = paused or sup.metric("morag_worker_leasing_paused") == 1
            time.sleep(0.05)
        for filler in self.fillers:
            filler.unlink()
        self.fillers.clear()
        failed = sup.metric("morag_worker_infrastructure_failures_total") > self.failures
        return paused or failed


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
