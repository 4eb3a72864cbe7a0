"""Turn the configuration into child slots: which device, environment and CPUs each has.

GPU children: ``--procs-per-gpu`` per GPU from ``--gpus``, each with
``CUDA_VISIBLE_DEVICES`` set to its GPU and pinned to the GPU's NUMA-local CPUs.
CPU children: ``--cpu-procs`` (default: none beside GPUs, ``--max-concurrent`` without),
each on its own disjoint core set.
"""

from __future__ import annotations

from morag_worker.config import SupervisorConfig
from morag_worker.protocol import DeviceInfo
from morag_worker.supervisor.devices import Nvml, gpu_affinity, parse_gpus
from morag_worker.supervisor.messages import ChildSpec
from morag_worker.supervisor.placement import (
    allowed_cpus,
    cpu_child_env,
    cpu_core_sets,
    gpu_child_env,
)


def plan_children(config: SupervisorConfig, nvml: Nvml) -> list[tuple[ChildSpec, str, int | None]]:
    """(spec, pool, gpu index) per child slot, in a stable order."""
    gpus = parse_gpus(config.gpus_spec, nvml)
    cpu_procs = config.cpu_procs
    if cpu_procs < 0:
        cpu_procs = 0 if gpus else config.max_concurrent

    def spec(name: str, device: str, env: dict[str, str], cpus: set[int]) -> ChildSpec:
        return ChildSpec(
            name=name,
            generation=0,
            device=device,
            env=env,
            cpus=frozenset(cpus),
            settings=config.processing,
            plugins=config.plugins,
            preload=config.preload,
            log_level=config.log_level,
            log_format=config.log_format,
            worker_id=config.worker_id,
        )

    slots: list[tuple[ChildSpec, str, int | None]] = []
    allowed = allowed_cpus()
    for gpu in gpus:
        cpus = gpu_affinity(nvml, gpu, allowed)
        env = gpu_child_env(gpu, config.threads_per_proc)
        for n in range(config.procs_per_gpu):
            suffix = chr(ord("a") + n) if config.procs_per_gpu > 1 else ""
            slots.append((spec(f"gpu{gpu}{suffix}", "cuda", env, cpus), "gpu", gpu))
    for n, cpus in enumerate(cpu_core_sets(cpu_procs, config.threads_per_proc, allowed)):
        env = cpu_child_env(min(config.threads_per_proc, len(cpus)))
        slots.append((spec(f"cpu{n}", "cpu", env, cpus), "cpu", None))
    return slots


def describe_devices(nvml: Nvml, gpus: list[int]) -> list[DeviceInfo]:
    devices = []
    for index in gpus:
        info = nvml.info(index)
        devices.append(
            DeviceInfo(
                kind="gpu",
                index=index,
                name=info.name,
                uuid=info.uuid,
                memory_total_bytes=info.memory_total_bytes,
            )
        )
    return devices or [DeviceInfo(kind="cpu")]
