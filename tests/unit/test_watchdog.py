"""The watchdog's parsing and decisions, and VRAM admission, without children.

GPU readings come from FakeNvml, a test double: the test machines have no NVIDIA GPU.
The "children" whose memory is sampled are real processes (``sleep``).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import replace

import pytest

from morag_worker.config import load_config, parse_pool_types
from morag_worker.errors import ConfigError
from morag_worker.processors.settings import ProcessorSettings
from morag_worker.sizes import Amount, MemoryLimit, parse_memory_limit
from morag_worker.supervisor.admission import MODEL_BYTES, admitted
from morag_worker.supervisor.devices import FakeGpu, FakeNvml
from morag_worker.supervisor.exitcodes import EXIT_BOOT_FAILED, EXIT_OK, EXIT_RECYCLE
from morag_worker.supervisor.layout import plan_children
from morag_worker.supervisor.lifecycle import restart_reason
from morag_worker.supervisor.limits import task_limit
from morag_worker.supervisor.messages import ChildSpec
from morag_worker.supervisor.pool import ChildPool, Slot
from morag_worker.supervisor.routing import Router
from morag_worker.supervisor.watchdog import (
    BOOT_TIMEOUT_S,
    IDLE_SAMPLE_INTERVAL_S,
    SAMPLE_INTERVAL_S,
    Watchdog,
    is_unresponsive,
    judge_memory,
)

GIB = 2**30


def _slot(name: str = "gpu0", gpu: int | None = 0) -> Slot:
    spec = ChildSpec(name, 0, "cuda", {}, frozenset(), ProcessorSettings())
    return Slot(spec=spec, pool="gpu" if gpu is not None else "cpu", gpu=gpu)


class _Pool(ChildPool):
    """A real pool holding hand-made slots (no processes are started)."""

    def __init__(self, *slots: Slot) -> None:
        super().__init__([])
        self.slots = {s.name: s for s in slots}


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


# ---- parsing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("6G", MemoryLimit(Amount(bytes=6 * GIB))),
        ("6GiB,8GiB", MemoryLimit(Amount(bytes=6 * GIB), Amount(bytes=8 * GIB))),
        ("512M,1g", MemoryLimit(Amount(bytes=512 * 2**20), Amount(bytes=GIB))),
        ("1073741824", MemoryLimit(Amount(bytes=GIB))),
        ("25%,40%", MemoryLimit(Amount(share=0.25), Amount(share=0.4))),
        (",2G", MemoryLimit(None, Amount(bytes=2 * GIB))),
        ("1.5G", MemoryLimit(Amount(bytes=int(1.5 * GIB)))),
        ("", MemoryLimit()),
    ],
)
def test_memory_limit_syntax(text: str, expected: MemoryLimit) -> None:
    assert parse_memory_limit("--max-memory-per-child", text) == expected


@pytest.mark.parametrize("text", ["6X", "-1G", "0", "120%", "0%", "abc%", "1G,2G,3G", ",", "8G,6G"])
def test_bad_memory_limits_name_the_flag(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^--max-memory-per-child: "):
        parse_memory_limit("--max-memory-per-child", text)


def test_config_flags_and_variables() -> None:
    config = load_config(
        ["--api-key", "k", "--max-gpu-memory-per-child", "80%,95%", "--max-tasks-per-child", "50"],
        {"MORAG_MAX_MEMORY_PER_CHILD": "4G", "MORAG_POOL_TYPES": "gpu=audio;cpu=document,image"},
    )
    assert config.max_memory.resolve(0) == (4 * GIB, 0)
    assert config.max_gpu_memory.resolve(100 * GIB) == (80 * GIB, 95 * GIB)
    assert config.max_tasks_per_child == 50
    assert config.pool_types == {"gpu": {"audio"}, "cpu": {"document", "image"}}
    with pytest.raises(ConfigError, match=r"^--max-tasks-per-child: "):
        load_config(["--api-key", "k", "--max-tasks-per-child", "-1"], {})
    with pytest.raises(ConfigError, match=r"^--max-gpu-memory-per-child: "):
        load_config(["--api-key", "k"], {"MORAG_MAX_GPU_MEMORY_PER_CHILD": "lots"})


@pytest.mark.parametrize(
    "text", ["gpu=audio;gpu=video", "tpu=audio", "gpu=audio;cpu=audio", "audio,video"]
)
def test_bad_pool_types(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^--pool-types: "):
        parse_pool_types(text)


def test_pool_types_route_and_fall_back() -> None:
    router = Router(parse_pool_types("gpu=audio;cpu=document,image"), {"gpu", "cpu"})
    assert router.pools_for("image") == {"cpu"} and router.pools_for("audio") == {"gpu"}
    assert router.pools_for("noop") == {"gpu", "cpu"}
    cpu_only = Router(parse_pool_types("gpu=audio;cpu=document"), {"cpu"})
    assert cpu_only.pools_for("audio") == {"cpu"}  # no GPU children: CPU runs it


def test_task_limit_jitter_stays_within_ten_percent() -> None:
    limits = {task_limit(100) for _ in range(500)}
    assert min(limits) >= 90 and max(limits) <= 110 and len(limits) > 5
    assert task_limit(0) == 0 and task_limit(1) == 1


# ---- decisions ---------------------------------------------------------------------------------


def test_judge_memory_hard_before_soft_and_gpu_too() -> None:
    ram, gpu = (100, 200), (1000, 2000)
    assert judge_memory(50, 500, ram, gpu) is None
    assert judge_memory(150, 500, ram, gpu)[0] == "recycle"  # type: ignore[index]
    assert judge_memory(250, 500, ram, gpu)[0] == "kill"  # type: ignore[index]
    assert judge_memory(150, 2500, ram, gpu)[0] == "kill"  # type: ignore[index]
    verdict = judge_memory(50, 1500, ram, gpu)
    assert verdict is not None and verdict[0] == "recycle" and "GPU memory" in verdict[1]
    assert judge_memory(10**12, 10**12, (0, 0), (0, 0)) is None  # no limits


def test_unresponsive_only_when_idle_and_silent_since_becoming_idle(
    sleeper: subprocess.Popen[bytes],
) -> None:
    slot = _slot()
    slot.process, slot.state = sleeper, "idle"
    slot.heartbeat = type("Stamp", (), {"value": 100.0})()
    slot.idle_since = 100.0
    assert not is_unresponsive(slot, 105.0, timeout_s=10)
    assert is_unresponsive(slot, 111.0, timeout_s=10)
    slot.idle_since = 108.0  # idle again after a task: the old stamp does not count
    assert not is_unresponsive(slot, 111.0, timeout_s=10)
    slot.state = "busy"
    assert not is_unresponsive(slot, 500.0, timeout_s=10)


def test_restart_reasons() -> None:
    slot = _slot()
    assert restart_reason(slot, None, EXIT_BOOT_FAILED) == "boot"
    assert restart_reason(slot, None, -9) == "crash"
    slot.recycle = "cuda_oom"
    assert restart_reason(slot, None, EXIT_RECYCLE) == "cuda_oom"
    slot.recycle = "max_tasks"
    assert restart_reason(slot, None, EXIT_OK) == "max_tasks"
    slot.recycle, slot.down_reason = "", "unresponsive"
    assert restart_reason(slot, None, -9) == "unresponsive"


def test_watchdog_samples_tree_rss_and_gpu_memory_per_pid(
    sleeper: subprocess.Popen[bytes],
) -> None:
    nvml = FakeNvml([FakeGpu(memory_total_bytes=16 * GIB, processes={sleeper.pid: 13 * GIB})])
    slot = _slot()
    slot.process, slot.state = sleeper, "busy"
    config = load_config(
        ["--api-key", "k", "--max-gpu-memory-per-child", "50%,75%", "--max-memory-per-child", "8G"],
        {},
    )
    dog = Watchdog(_Pool(slot), nvml, config)  # type: ignore[arg-type]
    verdicts = dog.check(now=1.0)
    assert slot.gpu_bytes == 13 * GIB and 0 < slot.rss_bytes < 8 * GIB
    assert [(v.action, v.reason) for v in verdicts] == [("kill", "memory")]
    nvml.gpus[0].processes = {sleeper.pid: 9 * GIB}
    assert dog.check(now=1.5) == []  # sampled about once a second, not every tick
    verdicts = dog.check(now=2.0)
    assert [(v.action, v.reason) for v in verdicts] == [("recycle", "memory")]
    nvml.gpus[0].lost = True  # no reading: no verdict, no crash
    assert dog.check(now=3.0) == [] and dog.readings == {}


def test_a_task_starting_on_an_idle_pool_is_sampled_within_a_second(
    sleeper: subprocess.Popen[bytes],
) -> None:
    """Idle children are sampled every few seconds; a task that starts meanwhile must not
    wait for that slow pace (a fast-growing task would run unmeasured)."""
    nvml = FakeNvml([FakeGpu(memory_total_bytes=16 * GIB, processes={sleeper.pid: GIB})])
    slot = _slot()
    slot.process, slot.state = sleeper, "idle"
    config = load_config(["--api-key", "k", "--max-gpu-memory-per-child", "4G,12G"], {})
    dog = Watchdog(_Pool(slot), nvml, config)  # type: ignore[arg-type]
    assert dog.check(now=10.0) == []
    assert dog.next_sample == 10.0 + IDLE_SAMPLE_INTERVAL_S
    slot.state = "busy"  # a task starts; it grows fast
    nvml.gpus[0].processes = {sleeper.pid: 6 * GIB}
    assert dog.check(now=10.5) == []  # still once a second at most
    verdicts = dog.check(now=11.0)
    assert [(v.action, v.reason) for v in verdicts] == [("recycle", "memory")]


def test_vram_admission(sleeper: subprocess.Popen[bytes]) -> None:
    nvml = FakeNvml([FakeGpu(memory_total_bytes=16 * GIB, memory_used_bytes=15 * GIB)])
    slot = _slot()
    slot.process, slot.state = sleeper, "idle"
    config = load_config(["--api-key", "k"], {})
    router = Router(config.pool_types, {"gpu"})
    dog = Watchdog(_Pool(slot), nvml, config)  # type: ignore[arg-type]
    dog.check(now=1.0)
    types = ["audio", "document", "image", "noop"]
    assert MODEL_BYTES["audio"] > GIB
    # 1 GiB free: audio does not fit; image (1 GiB) just does; CPU types always pass.
    assert admitted(types, router, [slot], dog) == ["document", "image", "noop"]
    slot.models = ("whisper:small:cuda:float16",)  # already loaded: no new memory needed
    assert admitted(types, router, [slot], dog) == types
    slot.models = ()
    nvml.gpus[0].memory_used_bytes = 2 * GIB
    dog.check(now=2.0)  # an idle child is sampled every few seconds, not every second
    assert admitted(types, router, [slot], dog) == ["document", "image", "noop"]
    dog.check(now=1.0 + IDLE_SAMPLE_INTERVAL_S)
    assert admitted(types, router, [slot], dog) == types
    slot.state = "starting"  # a child still booting counts: its GPU is measured
    assert admitted(types, router, [slot], dog) == types
    slot.state = "quarantined"  # no GPU child left: nothing here could run these types
    assert admitted(types, router, [slot], dog) == []
    both = Router(config.pool_types, {"gpu", "cpu"})
    assert admitted(types, both, [slot], dog) == ["document", "noop"]


def test_gpu_children_are_pinned_to_their_numa_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("morag_worker.supervisor.layout.allowed_cpus", lambda: set(range(8)))
    nvml = FakeNvml([FakeGpu(cpus={0, 1, 2, 3}), FakeGpu(cpus={4, 5, 6, 7, 8, 9})])
    config = replace(load_config(["--api-key", "k", "--gpus", "0,1"], {}), procs_per_gpu=2)
    plan = plan_children(config, nvml)
    by_name = {spec.name: (spec, pool, gpu) for spec, pool, gpu in plan}
    assert sorted(by_name) == ["gpu0a", "gpu0b", "gpu1a", "gpu1b"]
    assert by_name["gpu0a"][0].cpus == {0, 1, 2, 3}
    assert by_name["gpu1b"][0].cpus == {4, 5, 6, 7}  # NUMA-local and allowed
    assert by_name["gpu1a"][0].env["CUDA_VISIBLE_DEVICES"] == "1"
    assert by_name["gpu1a"][2] == 1


def test_a_child_stuck_starting_is_killed_as_a_boot_failure(
    sleeper: subprocess.Popen[bytes],
) -> None:
    slot = _slot("cpu0", gpu=None)
    slot.process, slot.state, slot.started_at = sleeper, "starting", 0.0
    dog = Watchdog(_Pool(slot), FakeNvml(), load_config(["--api-key", "k"], {}))  # type: ignore[arg-type]
    assert dog.check(now=BOOT_TIMEOUT_S - 1) == []
    verdicts = dog.check(now=BOOT_TIMEOUT_S + 1)
    assert [(v.action, v.reason) for v in verdicts] == [("kill", "boot")]


def test_work_that_starts_after_an_idle_sample_is_sampled_within_a_second(
    sleeper: subprocess.Popen[bytes],
) -> None:
    """Found by the chaos campaign (memory-hang): a task that started just after an
    idle sample was not sampled for up to 5 s, and one that grew past the hard limit
    and finished within that time was never killed."""
    slot = _slot("cpu0", gpu=None)
    slot.process, slot.state = sleeper, "idle"
    dog = Watchdog(_Pool(slot), FakeNvml(), load_config(["--api-key", "k"], {}))  # type: ignore[arg-type]
    assert dog.check(now=100.0) == []  # an idle sample: the next one 5 s later...
    assert dog.next_sample == 100.0 + IDLE_SAMPLE_INTERVAL_S
    slot.state = "busy"  # ...but a task starts now and grows past the hard limit
    dog.ram_limits = (0, 1024)
    assert dog.check(now=100.2) == []  # the loop's first tick with the task running
    verdicts = dog.check(now=100.2 + SAMPLE_INTERVAL_S)
    assert [(v.action, v.reason) for v in verdicts] == [("kill", "memory")]
