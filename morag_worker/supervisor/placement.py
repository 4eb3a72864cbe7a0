"""Where a child runs: its device environment and its CPU set.

Pure functions of configuration and the CPUs this process may use; NVML-dependent
placement (a GPU's NUMA-local CPUs) is :func:`morag_worker.supervisor.devices.gpu_affinity`.
"""

from __future__ import annotations

import os

from morag_worker.errors import ConfigError

#: Thread-count variables honoured by the numeric libraries a child may load.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)

#: Cores kept free of CPU children when there are enough: the supervisor's main loop,
#: heartbeat, transfer and HTTP threads run there, and CPU 0 usually takes most interrupts.
DEFAULT_RESERVED_CPUS = 1


def gpu_child_env(gpu_index: int, threads: int) -> dict[str, str]:
    """Variables a child on NVML GPU ``gpu_index`` must have before it imports torch.

    The caller overlays them on the inherited environment before the child loads any
    CUDA, OpenMP or BLAS library, since each reads them once, at load.
    ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` makes CUDA number GPUs as NVML does.
    """
    env = _thread_env(threads)
    env["CUDA_VISIBLE_DEVICES"] = str(gpu_index)
    env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    return env


def cpu_child_env(threads: int) -> dict[str, str]:
    """Variables for a CPU-only child: CUDA sees no device (an empty list), threads fixed."""
    env = _thread_env(threads)
    env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def _thread_env(threads: int) -> dict[str, str]:
    if threads < 1:
        raise ConfigError(f"--threads-per-proc must be at least 1, got {threads}")
    env = {name: str(threads) for name in THREAD_VARIABLES}
    # The tokenizers library's own pool would multiply the child's threads.
    env["TOKENIZERS_PARALLELISM"] = "false"
    return env


def allowed_cpus() -> set[int]:
    """CPUs this process may run on (its affinity, as cgroups and systemd narrow it)."""
    return set(os.sched_getaffinity(0))


def cpu_core_sets(
    n_children: int,
    threads_per_child: int,
    available_cpus: set[int],
    reserved: int = DEFAULT_RESERVED_CPUS,
) -> list[set[int]]:
    """Disjoint CPU sets, one per CPU child, contiguous in CPU-id order.

    Tried in order, first fit wins:

    1. ``threads_per_child`` CPUs each, leaving the lowest ``reserved`` CPUs free;
    2. the same using the reserved CPUs too (the supervisor is mostly waiting on I/O,
       a child short of its threads is slower);
    3. fewer CPUs than asked: the CPUs split as evenly as possible, each child at least
       one, the reserved ones kept free if that still leaves one per child. The caller
       then runs each child with ``len(its set)`` threads, so a smaller host runs the same
       configuration more slowly instead of refusing to start.

    Fewer CPUs than children is a :class:`ConfigError` naming ``--cpu-procs``: pinned
    children sharing a core run slower than unpinned ones, and that hides the mistake.
    """
    if n_children < 0 or threads_per_child < 1:
        raise ConfigError(
            "--cpu-procs must be >= 0 and --threads-per-proc >= 1, "
            f"got {n_children} and {threads_per_child}"
        )
    cpus = sorted(available_cpus)
    if n_children == 0:
        return []
    if len(cpus) < n_children:
        raise ConfigError(
            f"--cpu-procs {n_children}: disjoint pinning needs at least {n_children} CPUs; "
            f"this process may use {len(cpus)} ({','.join(map(str, cpus)) or 'none'})"
        )
    candidates = [cpus[reserved:], cpus] if reserved > 0 else [cpus]
    for usable in candidates:
        if len(usable) >= n_children * threads_per_child:
            return _split(usable[: n_children * threads_per_child], n_children)
    usable = next(c for c in candidates if len(c) >= n_children)
    return _split(usable, n_children)


def _split(cpus: list[int], n: int) -> list[set[int]]:
    """``cpus`` cut into ``n`` contiguous parts whose sizes differ by at most one."""
    base, extra = divmod(len(cpus), n)
    parts, start = [], 0
    for i in range(n):
        size = base + (1 if i < extra else 0)
        parts.append(set(cpus[start : start + size]))
        start += size
    return parts


def supervisor_cpus(allowed: set[int], cpu_children: list[set[int]]) -> set[int] | None:
    """The CPUs the supervisor's own threads should keep to: those no CPU child is pinned
    to, so that its downloads (hashing every byte), uploads and HTTP calls never take a
    core a child computes on. None (stay unpinned) without CPU children, or when they
    hold every allowed CPU."""
    owned = set().union(*cpu_children) if cpu_children else set()
    rest = allowed - owned
    return rest if owned and rest else None
