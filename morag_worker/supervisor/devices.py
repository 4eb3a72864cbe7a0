"""GPU discovery through NVML, and the one import for placing children on devices.

The supervisor never imports torch: it learns about GPUs through NVML (the
``nvidia-ml-py`` package, imported lazily). Everything that asks about devices takes
an object satisfying :class:`Nvml`; :func:`open_nvml` returns the real one, which reports
zero GPUs when the library or the driver is missing instead of failing. Tests (the
test machines have no GPU) use :class:`FakeNvml`, the same interface driven by data.

Indices are NVML indices, which follow PCI bus order. Children therefore get
``CUDA_DEVICE_ORDER=PCI_BUS_ID`` so that CUDA's index N is NVML's index N.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Protocol

from morag_worker.errors import ConfigError

# Re-exported: devices, placement and CUDA error classes are what the pool and the
# children import together, from here.
from morag_worker.supervisor.cuda_errors import classify_cuda_error, is_device_fault
from morag_worker.supervisor.placement import (
    allowed_cpus,
    cpu_child_env,
    cpu_core_sets,
    gpu_child_env,
)

__all__ = [
    "DeviceError",
    "FakeGpu",
    "FakeNvml",
    "GpuInfo",
    "GpuMemory",
    "Nvml",
    "PynvmlNvml",
    "allowed_cpus",
    "classify_cuda_error",
    "cpu_child_env",
    "cpu_core_sets",
    "gpu_affinity",
    "gpu_child_env",
    "is_device_fault",
    "list_gpus",
    "mask_words_to_cpus",
    "open_nvml",
    "parse_gpus",
]

#: Bits per word of NVML's CPU affinity mask (an array of C ``unsigned long long``).
_AFFINITY_WORD_BITS = 64


class DeviceError(Exception):
    """An NVML query about a device failed (device lost, no such index, no library)."""


@dataclass(frozen=True)
class GpuInfo:
    """What does not change about a GPU while the supervisor runs."""

    index: int
    name: str
    uuid: str
    pci_bus_id: str
    memory_total_bytes: int


@dataclass(frozen=True)
class GpuMemory:
    """One reading of a GPU's memory, in bytes."""

    total_bytes: int
    used_bytes: int
    free_bytes: int


class Nvml(Protocol):
    """The device-discovery seam: the NVML queries the supervisor makes.

    Per-device methods raise :class:`DeviceError` when the query fails; callers on the
    watchdog path treat that as "no reading this tick", not as a crash.
    """

    def device_count(self) -> int: ...

    def info(self, index: int) -> GpuInfo: ...

    def memory(self, index: int) -> GpuMemory: ...

    def utilization_ratio(self, index: int) -> float:
        """Fraction of the last sample period a kernel ran, 0.0 to 1.0."""
        ...

    def process_memory(self, index: int) -> dict[int, int]:
        """GPU memory used on this device by each compute process, ``{pid: bytes}``."""
        ...

    def cpu_affinity(self, index: int) -> set[int]:
        """CPU ids close to this device (its NUMA node); may be empty if unknown."""
        ...

    def close(self) -> None: ...


class PynvmlNvml:
    """:class:`Nvml` backed by ``pynvml``; zero devices when NVML cannot start.

    ``unavailable_reason`` says why there are no devices (for one log line at start),
    or is ``None`` when NVML initialised.

    Process ids from :meth:`process_memory` are in the host's PID namespace: inside a
    container that does not share it they will not match the children's ``os.getpid()``.
    """

    def __init__(self) -> None:
        self._nvml: Any = None
        self.unavailable_reason: str | None = None
        try:
            import pynvml  # lazy: an optional dependency, absent on CPU-only hosts

            pynvml.nvmlInit()
        except ImportError:
            self.unavailable_reason = "nvidia-ml-py is not installed"
        except Exception as exc:  # pynvml.NVMLError: no library, no driver, no device
            self.unavailable_reason = f"NVML did not start: {exc}"
        else:
            self._nvml = pynvml

    def device_count(self) -> int:
        """Number of GPUs; 0 when NVML did not start or cannot count (reason recorded)."""
        if self._nvml is None:
            return 0
        try:
            return int(self._call("nvmlDeviceGetCount"))
        except DeviceError as exc:
            self.unavailable_reason = str(exc)
            return 0

    def info(self, index: int) -> GpuInfo:
        handle = self._handle(index)
        mem = self._call("nvmlDeviceGetMemoryInfo", handle)
        return GpuInfo(
            index=index,
            name=_text(self._call("nvmlDeviceGetName", handle)),
            uuid=_text(self._call("nvmlDeviceGetUUID", handle)),
            pci_bus_id=_text(self._call("nvmlDeviceGetPciInfo", handle).busId),
            memory_total_bytes=int(mem.total),
        )

    def memory(self, index: int) -> GpuMemory:
        mem = self._call("nvmlDeviceGetMemoryInfo", self._handle(index))
        return GpuMemory(int(mem.total), int(mem.used), int(mem.free))

    def utilization_ratio(self, index: int) -> float:
        rates = self._call("nvmlDeviceGetUtilizationRates", self._handle(index))
        return float(rates.gpu) / 100.0

    def process_memory(self, index: int) -> dict[int, int]:
        """``{pid: bytes}``; a process whose usage NVML cannot see (MIG, some
        containers) is left out rather than reported as 0."""
        procs = self._call("nvmlDeviceGetComputeRunningProcesses", self._handle(index))
        return {int(p.pid): int(p.usedGpuMemory) for p in procs if p.usedGpuMemory is not None}

    def cpu_affinity(self, index: int) -> set[int]:
        n_cpus = os.cpu_count() or 1
        n_words = (n_cpus + _AFFINITY_WORD_BITS - 1) // _AFFINITY_WORD_BITS
        words = self._call("nvmlDeviceGetCpuAffinity", self._handle(index), n_words)
        return mask_words_to_cpus([int(w) for w in words])

    def close(self) -> None:
        if self._nvml is not None:
            self._call("nvmlShutdown")
            self._nvml = None

    def _handle(self, index: int) -> Any:
        if self._nvml is None:
            raise DeviceError(f"no GPU {index}: {self.unavailable_reason}")
        return self._call("nvmlDeviceGetHandleByIndex", index)

    def _call(self, name: str, *args: Any) -> Any:
        try:
            return getattr(self._nvml, name)(*args)
        except self._nvml.NVMLError as exc:
            raise DeviceError(f"{name}: {exc}") from exc


def _text(value: str | bytes) -> str:
    """NVML strings are ``bytes`` in older bindings and ``str`` in newer ones."""
    return value.decode() if isinstance(value, bytes) else str(value)


def open_nvml() -> PynvmlNvml:
    """The real NVML; never raises — a host without GPUs gets zero devices."""
    return PynvmlNvml()


def mask_words_to_cpus(words: list[int]) -> set[int]:
    """CPU ids set in an NVML affinity mask (word 0 holds CPUs 0-63)."""
    return {
        w * _AFFINITY_WORD_BITS + bit
        for w, word in enumerate(words)
        for bit in range(_AFFINITY_WORD_BITS)
        if word >> bit & 1
    }


def list_gpus(nvml: Nvml) -> list[GpuInfo]:
    """Every GPU NVML can describe; one that fails to answer is left out."""
    found = []
    for index in range(nvml.device_count()):
        try:
            found.append(nvml.info(index))
        except DeviceError:
            continue
    return found


def parse_gpus(spec: str, nvml: Nvml) -> list[int]:
    """The GPU indices ``--gpus`` names: ``all``, ``none`` or a list such as ``0,1``.

    ``all`` on a host without GPUs is an empty list, so one unit file serves CPU and GPU
    hosts; naming an index the host lacks, a duplicate, or anything else is a
    :class:`ConfigError` naming ``--gpus``.
    """
    text = spec.strip().lower()
    count = nvml.device_count()
    if text == "none":
        return []
    if text == "all":
        return list(range(count))
    indices = [_parse_index(part, spec) for part in text.split(",")]
    duplicates = sorted({i for i in indices if indices.count(i) > 1})
    if duplicates:
        raise ConfigError(f"--gpus {spec!r}: GPU {duplicates[0]} is listed twice")
    for index in indices:
        if index >= count:
            raise ConfigError(f"--gpus {spec!r}: GPU {index} does not exist; {_have(nvml)}")
    return indices


def _parse_index(part: str, spec: str) -> int:
    part = part.strip()
    if not part.isdigit():
        raise ConfigError(
            f"--gpus {spec!r}: expected 'all', 'none' or GPU indices like '0,1', got {part!r}"
        )
    return int(part)


def _have(nvml: Nvml) -> str:
    count = nvml.device_count()
    if count == 0:
        reason = getattr(nvml, "unavailable_reason", None) or "NVML reports none"
        return f"this host has no NVIDIA GPU ({reason}); use --gpus none for CPU children only"
    return f"this host has {count} GPU(s): 0-{count - 1}"


def gpu_affinity(nvml: Nvml, gpu_index: int, allowed: set[int] | None = None) -> set[int]:
    """CPUs for a child on ``gpu_index``: the GPU's NUMA-local CPUs that are allowed.

    Falls back to every allowed CPU when NVML cannot tell, or when none of the local
    CPUs are allowed (a cpuset that excludes the GPU's node): a child must run somewhere.
    ``allowed`` defaults to :func:`allowed_cpus`.
    """
    usable = allowed_cpus() if allowed is None else set(allowed)
    try:
        local = nvml.cpu_affinity(gpu_index)
    except DeviceError:
        return usable
    return (local & usable) or usable


@dataclass
class FakeGpu:
    """One GPU as :class:`FakeNvml` reports it; plain data a test sets and changes."""

    name: str = "Fake GPU"
    uuid: str = ""
    pci_bus_id: str = ""
    memory_total_bytes: int = 16 * 2**30
    memory_used_bytes: int = 0
    utilization_ratio: float = 0.0
    processes: dict[int, int] = field(default_factory=dict)
    cpus: set[int] = field(default_factory=set)
    lost: bool = False


class FakeNvml:
    """An :class:`Nvml` driven by plain data, for tests and machines without a GPU.

    This is a test double: the test machines have no NVIDIA GPU, so the pinning,
    affinity and memory logic is exercised against it. GPU ``i`` gets a UUID and PCI bus
    id from its index unless given; ``lost=True`` makes every query on it raise
    :class:`DeviceError`, as NVML does for a GPU that fell off the bus.
    """

    def __init__(self, gpus: list[FakeGpu] | None = None) -> None:
        self.gpus = list(gpus or [])
        for i, gpu in enumerate(self.gpus):
            gpu.uuid = gpu.uuid or f"GPU-00000000-0000-0000-0000-{i:012d}"
            gpu.pci_bus_id = gpu.pci_bus_id or f"00000000:{i + 1:02X}:00.0"
        self.closed = False

    def device_count(self) -> int:
        return len(self.gpus)

    def info(self, index: int) -> GpuInfo:
        gpu = self._gpu(index)
        return GpuInfo(index, gpu.name, gpu.uuid, gpu.pci_bus_id, gpu.memory_total_bytes)

    def memory(self, index: int) -> GpuMemory:
        gpu = self._gpu(index)
        free = gpu.memory_total_bytes - gpu.memory_used_bytes
        return GpuMemory(gpu.memory_total_bytes, gpu.memory_used_bytes, free)

    def utilization_ratio(self, index: int) -> float:
        return self._gpu(index).utilization_ratio

    def process_memory(self, index: int) -> dict[int, int]:
        return dict(self._gpu(index).processes)

    def cpu_affinity(self, index: int) -> set[int]:
        return set(self._gpu(index).cpus)

    def close(self) -> None:
        self.closed = True

    def _gpu(self, index: int) -> FakeGpu:
        if not 0 <= index < len(self.gpus):
            raise DeviceError(f"no GPU {index}: the fake has {len(self.gpus)}")
        if self.gpus[index].lost:
            raise DeviceError(f"GPU {index} is lost")
        return self.gpus[index]
