"""bench/gpu_check.py on a machine without a GPU (the test machines have none): it must
say so and exit 0, and its spawn-and-report machinery must turn a child that cannot use
CUDA into a clear failure line rather than a hang. The GPU itself is checked only where
one exists, by running the script there."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from morag_worker.supervisor.devices import FakeGpu, FakeNvml

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "gpu_check.py"


def load_script():
    if str(SCRIPT.parent) not in sys.path:
        sys.path.insert(0, str(SCRIPT.parent))  # spawned children get this sys.path
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # spawned children import it by this name
    spec.loader.exec_module(module)
    return module


def test_without_a_gpu_it_says_so_and_succeeds():
    done = subprocess.run(
        [sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120
    )
    if "GPUs passed" in done.stdout:
        pytest.skip("this machine has a GPU: the script ran for real")
    assert done.returncode == 0, done.stderr
    assert "no NVIDIA GPU here" in done.stdout


def test_a_child_that_cannot_use_cuda_is_reported_not_hung():
    """Fake NVML (a test double: no GPU here) lists one GPU; the spawned child pins
    itself as the supervisor's would, imports torch, and fails to start CUDA."""
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("CUDA works here; the failure path cannot be provoked")
    gpu_check = load_script()
    nvml = FakeNvml([FakeGpu(name="Fake", cpus={0})])
    reports = gpu_check.run_children(nvml, [nvml.info(0)], oom=False)
    report = reports[0]
    assert report["phase"] == "error"
    assert "CUDA" in report["error"]  # it got as far as torch, pinned and configured
    problems = gpu_check.failures(report, nvml.info(0).uuid, oom=False)
    assert problems and problems[0] == report["error"]
