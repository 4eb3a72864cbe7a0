"""``morag-supervisor`` on a host with fake GPUs, for the fault tests.

The test machines have no NVIDIA GPU, so this runs the real supervisor (real children,
real signals, real HTTP) with :class:`~morag_worker.supervisor.devices.FakeNvml` — a
test double — in place of NVML. ``FAKE_GPUS`` says how many GPUs it reports (default 2).
``FAKE_GPU_USED_FILE`` names a file holding the bytes in use on every fake GPU (16 GiB
each), read on every query, so a test can fill and empty the GPUs while it runs.
``FAKE_GPU_PROCS_FILE`` names a JSON file ``{pid: bytes}`` that stands in for NVML's
per-process GPU memory on every GPU (the ``hog`` task writes its own entry there).
The children get ``CUDA_VISIBLE_DEVICES`` as on a GPU host; the fault task types never
touch CUDA.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from morag_worker.cli import supervisor as cli
from morag_worker.supervisor import devices


class _FileFedNvml(devices.FakeNvml):
    def memory(self, index: int) -> devices.GpuMemory:
        used_file = os.environ.get("FAKE_GPU_USED_FILE")
        if used_file:
            self._gpu(index).memory_used_bytes = int(Path(used_file).read_text().strip() or 0)
        return super().memory(index)

    def process_memory(self, index: int) -> dict[int, int]:
        procs_file = os.environ.get("FAKE_GPU_PROCS_FILE")
        if procs_file and Path(procs_file).exists():
            text = Path(procs_file).read_text() or "{}"
            return {int(pid): int(size) for pid, size in json.loads(text).items()}
        return super().process_memory(index)


def _fake_nvml() -> devices.FakeNvml:
    count = int(os.environ.get("FAKE_GPUS", "2"))
    return _FileFedNvml([devices.FakeGpu(name="Fake GPU (test double)") for _ in range(count)])


if __name__ == "__main__":
    devices.open_nvml = _fake_nvml  # type: ignore[assignment]
    sys.exit(cli.main())
