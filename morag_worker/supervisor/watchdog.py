"""Watchdogs over the children, run by the supervisor from outside them.

Code inside a child cannot stop its own runaway allocation or notice that it hangs in a
C call, so the supervisor watches:

- memory, sampled about once a second: the RSS of each child together with its
  subprocesses (psutil walks the tree, so an ffmpeg the child started counts), and the
  GPU memory NVML attributes to those PIDs. Over the soft limit the child is replaced
  after its current task; over the hard limit it is killed at once (:class:`Verdict`);
- liveness: an idle child stamps a shared heartbeat value every half second; an idle
  child silent for ``--child-unresponsive-timeout`` is killed and restarted; a child
  that never finishes booting is killed after ``BOOT_TIMEOUT_S``.

:class:`Watchdog` only judges; the main loop acts on its verdicts. Per-task deadlines
are enforced with the task flow (``TaskFlow.enforce_deadlines``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psutil

from morag_worker.supervisor.devices import DeviceError, GpuMemory, Nvml

if TYPE_CHECKING:
    from morag_worker.config import SupervisorConfig
    from morag_worker.supervisor.pool import ChildPool, Slot

#: Memory is sampled this often, not every 0.2 s tick: walking process trees and asking
#: NVML costs milliseconds, and a second is well inside the time a leak takes to grow
#: from the soft to the hard limit.
SAMPLE_INTERVAL_S = 1.0
#: A child still starting after this long (stuck importing, or loading a preload model
#: from a hung file system) is killed; it counts as a boot failure. As long as the
#: unit's TimeoutStartSec=, the longest preload operators are told to expect.
BOOT_TIMEOUT_S = 600.0
#: While every child is idle nothing in them grows: memory is sampled this often instead.
IDLE_SAMPLE_INTERVAL_S = 5.0
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Verdict:
    slot: Slot
    action: str  #: "recycle" (after the current task) or "kill" (now)
    reason: str  #: "memory", "unresponsive" or "boot"
    detail: str


@dataclass(frozen=True)
class GpuReading:
    """One NVML reading of a GPU in use: memory and the memory of each process on it."""

    memory: GpuMemory
    processes: dict[int, int]


def judge_memory(
    rss: int, gpu_bytes: int, ram: tuple[int, int], gpu: tuple[int, int]
) -> tuple[str, str] | None:
    """("kill" | "recycle", why) for one child's readings against (soft, hard) limits in
    bytes (0 = none); ``None`` when it is within them. Hard limits win over soft ones."""
    checks = (("RSS", rss, ram), ("GPU memory", gpu_bytes, gpu))
    for what, value, (_, hard) in checks:
        if hard and value > hard:
            return "kill", f"{what} {_size(value)} is over the hard limit of {_size(hard)}"
    for what, value, (soft, _) in checks:
        if soft and value > soft:
            return "recycle", f"{what} {_size(value)} is over the soft limit of {_size(soft)}"
    return None


def is_unresponsive(slot: Slot, now: float, timeout_s: float) -> bool:
    """An idle child whose last heartbeat (or the moment it became idle, whichever is
    later: the stamp may predate its last task) is older than ``timeout_s``."""
    if slot.state != "idle" or slot.heartbeat is None or slot.process is None:
        return False
    last = max(float(slot.heartbeat.value), slot.idle_since)
    return now - last > timeout_s


def process_tree(pid: int) -> tuple[int, set[int]]:
    """(RSS in bytes, PIDs) of a process and all its descendants; (0, {}) once it is gone.

    Walks ``/proc/<pid>/task/*/children`` (Linux): a child's few descendants are found
    without scanning every process on the host, which is what psutil's ``children()``
    does and what made sampling the supervisor's largest idle cost. Falls back to psutil
    where that file does not exist.
    """
    try:
        pids = _descendants_proc(pid)
    except OSError:
        return _process_tree_psutil(pid)
    rss = 0
    for member in pids:
        try:
            with open(f"/proc/{member}/statm", "rb") as handle:
                rss += int(handle.read().split()[1]) * _PAGE_BYTES
        except (OSError, ValueError, IndexError):
            continue  # exited while we looked
    return (rss, pids) if rss else (0, set())


def _descendants_proc(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except FileNotFoundError:
            if current == pid:
                return set()
            continue
        found.add(current)
        for tid in tasks:
            try:
                with open(f"/proc/{current}/task/{tid}/children", "rb") as handle:
                    todo.extend(int(child) for child in handle.read().split())
            except FileNotFoundError:
                if not os.path.exists(f"/proc/{current}/task"):
                    break  # the process exited
                raise  # no children file on this kernel: use psutil
    return found


def _process_tree_psutil(pid: int) -> tuple[int, set[int]]:
    try:
        root = psutil.Process(pid)
        members = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0, set()
    rss, pids = 0, set()
    for proc in members:
        try:
            rss += proc.memory_info().rss
            pids.add(proc.pid)
        except psutil.Error:
            continue  # exited while we looked
    return rss, pids


class Watchdog:
    def __init__(self, pool: ChildPool, nvml: Nvml, config: SupervisorConfig) -> None:
        self.pool = pool
        self.nvml = nvml
        self.config = config
        self.ram_limits = config.max_memory.resolve(psutil.virtual_memory().total)
        self.gpus = sorted({s.gpu for s in pool.slots.values() if s.gpu is not None})
        #: Latest reading per GPU in use; a GPU NVML could not read is absent.
        self.readings: dict[int, GpuReading] = {}
        self.next_sample = 0.0

    def gpu_limits(self, gpu: int | None) -> tuple[int, int]:
        if gpu is None or not self.config.max_gpu_memory:
            return 0, 0
        reading = self.readings.get(gpu)
        total = reading.memory.total_bytes if reading else 0
        return self.config.max_gpu_memory.resolve(total)

    def check(self, now: float) -> list[Verdict]:
        """Verdicts due now: liveness every tick, memory once a sample is due."""
        verdicts = [
            Verdict(slot, "kill", "unresponsive", "no heartbeat while idle")
            for slot in self.pool.slots.values()
            if is_unresponsive(slot, now, self.config.unresponsive_s)
        ]
        verdicts += [
            Verdict(slot, "kill", "boot", f"still starting after {BOOT_TIMEOUT_S:.0f} s")
            for slot in self.pool.slots.values()
            if slot.state == "starting" and now - slot.started_at > BOOT_TIMEOUT_S
        ]
        working = any(s.state in ("busy", "starting") for s in self.pool.slots.values())
        if working:
            # Work that began after an idle sample is sampled within a second, not at
            # the idle interval: a task can reach the hard limit in less than 5 s.
            self.next_sample = min(self.next_sample, now + SAMPLE_INTERVAL_S)
        if now >= self.next_sample:
            self.next_sample = now + (SAMPLE_INTERVAL_S if working else IDLE_SAMPLE_INTERVAL_S)
            self.sample()
            verdicts += self.memory_verdicts()
        return verdicts

    def sample(self) -> None:
        """Read NVML for the GPUs in use and each live child's memory into its slot."""
        self.readings = {}
        for gpu in self.gpus:
            try:
                self.readings[gpu] = GpuReading(
                    self.nvml.memory(gpu), self.nvml.process_memory(gpu)
                )
            except DeviceError:
                continue  # no reading this time; a lost GPU shows up as CUDA errors
        for slot in self.pool.slots.values():
            process = slot.process
            if process is None or not process.pid:
                self.pool.note_memory(slot, 0, 0)
                continue
            rss, pids = process_tree(process.pid)
            reading = self.readings.get(slot.gpu) if slot.gpu is not None else None
            gpu_bytes = slot.gpu_bytes
            if reading is not None:
                gpu_bytes = sum(reading.processes.get(pid, 0) for pid in pids)
            self.pool.note_memory(slot, rss, gpu_bytes)

    def memory_verdicts(self) -> list[Verdict]:
        verdicts = []
        for slot in self.pool.slots.values():
            if slot.state not in ("idle", "busy", "starting") or slot.process is None:
                continue
            judged = judge_memory(
                slot.rss_bytes, slot.gpu_bytes, self.ram_limits, self.gpu_limits(slot.gpu)
            )
            if judged is not None:
                verdicts.append(Verdict(slot, judged[0], "memory", judged[1]))
        return verdicts


def _size(value: int) -> str:
    return f"{value / 2**20:.0f} MiB"
