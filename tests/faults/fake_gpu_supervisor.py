"""``morag-supervisor`` on a host with fake GPUs, for the fault tests.

The test machines have no NVIDIA GPU, so this runs the real supervisor (real children,
real signals, real HTTP) with :class:`~morag_worker.supervisor.devices.FakeNvml` — a
test double — in place of NVML. ``FAKE_GPUS`` says how many GPUs it reports (default 2).
The children get ``CUDA_VISIBLE_DEVICES`` as on a GPU host; the fault task types never
touch CUDA.
"""

from __future__ import annotations

import os
import sys

from morag_worker.cli import supervisor as cli
from morag_worker.supervisor import devices


def _fake_nvml() -> devices.FakeNvml:
    count = int(os.environ.get("FAKE_GPUS", "2"))
    return devices.FakeNvml([devices.FakeGpu(name="Fake GPU (test double)") for _ in range(count)])


if __name__ == "__main__":
    devices.open_nvml = _fake_nvml  # type: ignore[assignment]
    sys.exit(cli.main())
