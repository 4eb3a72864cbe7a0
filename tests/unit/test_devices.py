"""Device discovery, child placement and CUDA error classification.

The test machines have no NVIDIA GPU: the NVML-dependent logic runs against
``FakeNvml`` (the one test double here, driven by plain data). The real
``PynvmlNvml`` is still exercised where it matters on such a machine: it must report
"no GPUs" instead of failing.
"""

from __future__ import annotations

import multiprocessing
import os

import pytest

from morag_worker.errors import ConfigError
from morag_worker.supervisor import devices
from morag_worker.supervisor.devices import (
    DeviceError,
    FakeGpu,
    FakeNvml,
    classify_cuda_error,
    cpu_child_env,
    cpu_core_sets,
    gpu_affinity,
    gpu_child_env,
    is_device_fault,
    list_gpus,
    mask_words_to_cpus,
    parse_gpus,
)

GIB = 2**30


def two_gpus() -> FakeNvml:
    return FakeNvml(
        [
            FakeGpu(name="H100", cpus=set(range(0, 8)), processes={101: 3 * GIB}),
            FakeGpu(name="H100", cpus=set(range(8, 16)), memory_used_bytes=5 * GIB),
        ]
    )


# --- the real NVML on a machine without a GPU -------------------------------------


def test_real_nvml_without_gpu_reports_none_and_says_why():
    nvml = devices.open_nvml()
    try:
        if nvml.device_count() > 0:
            pytest.skip("this machine has a GPU; bench/gpu_check.py covers it")
        assert nvml.unavailable_reason
        assert list_gpus(nvml) == []
        with pytest.raises(DeviceError, match="no GPU 0"):
            nvml.memory(0)
        assert parse_gpus("all", nvml) == []
        with pytest.raises(ConfigError, match=r"--gpus.*no NVIDIA GPU.*--gpus none"):
            parse_gpus("0", nvml)
    finally:
        nvml.close()


# --- parse_gpus --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("all", [0, 1]),
        ("ALL", [0, 1]),
        ("none", []),
        ("0", [0]),
        ("1,0", [1, 0]),
        (" 0 , 1 ", [0, 1]),
    ],
)
def test_parse_gpus_accepts(spec, expected):
    assert parse_gpus(spec, two_gpus()) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("2", r"--gpus '2': GPU 2 does not exist; this host has 2 GPU\(s\): 0-1"),
        ("0,0", r"--gpus '0,0': GPU 0 is listed twice"),
        ("0,x", r"--gpus '0,x': expected 'all', 'none' or GPU indices"),
        ("-1", r"--gpus '-1': expected"),
        ("", r"--gpus '': expected"),
        ("0,", r"--gpus '0,': expected"),
    ],
)
def test_parse_gpus_rejects_with_the_flag_named(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_gpus(spec, two_gpus())


# --- NVML readings through the seam -------------------------------------------------


def test_fake_nvml_readings():
    nvml = two_gpus()
    info = list_gpus(nvml)
    assert [g.index for g in info] == [0, 1]
    assert info[0].uuid != info[1].uuid and info[0].pci_bus_id != info[1].pci_bus_id
    mem = nvml.memory(1)
    assert (mem.total_bytes, mem.used_bytes, mem.free_bytes) == (16 * GIB, 5 * GIB, 11 * GIB)
    assert nvml.process_memory(0) == {101: 3 * GIB}


def test_a_lost_gpu_raises_device_error_and_drops_out_of_the_list():
    nvml = two_gpus()
    nvml.gpus[0].lost = True
    with pytest.raises(DeviceError, match="lost"):
        nvml.memory(0)
    assert [g.index for g in list_gpus(nvml)] == [1]


def test_affinity_mask_words_become_cpu_ids():
    assert mask_words_to_cpus([0b1011]) == {0, 1, 3}
    assert mask_words_to_cpus([0, 1 << 63, 0b1]) == {127, 128}
    assert mask_words_to_cpus([]) == set()


# --- GPU affinity -------------------------------------------------------------------


def test_gpu_affinity_is_the_numa_local_cpus_that_are_allowed():
    nvml = two_gpus()
    assert gpu_affinity(nvml, 1, allowed=set(range(32))) == set(range(8, 16))
    assert gpu_affinity(nvml, 1, allowed={0, 9, 10, 20}) == {9, 10}


def test_gpu_affinity_falls_back_to_every_allowed_cpu():
    nvml = two_gpus()
    assert gpu_affinity(nvml, 0, allowed={20, 21}) == {20, 21}  # cpuset excludes the node
    nvml.gpus[0].cpus = set()
    assert gpu_affinity(nvml, 0, allowed={0, 1}) == {0, 1}  # NVML cannot tell
    nvml.gpus[0].lost = True
    assert gpu_affinity(nvml, 0, allowed={0, 1}) == {0, 1}  # NVML fails
    assert gpu_affinity(nvml, 0) == os.sched_getaffinity(0)  # default: this process's CPUs


# --- child environments ---------------------------------------------------------------


def test_gpu_child_env_pins_one_device_in_pci_order_and_fixes_threads():
    env = gpu_child_env(1, 4)
    assert env["CUDA_VISIBLE_DEVICES"] == "1"
    assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    for name in (
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "NUMEXPR_NUM_THREADS",
    ):
        assert env[name] == "4"
    assert env["TOKENIZERS_PARALLELISM"] == "false"


def test_cpu_child_env_hides_cuda():
    env = cpu_child_env(2)
    assert env["CUDA_VISIBLE_DEVICES"] == ""
    assert env["OMP_NUM_THREADS"] == "2"


def test_thread_count_must_be_positive():
    with pytest.raises(ConfigError, match="--threads-per-proc"):
        gpu_child_env(0, 0)


def _report_env(names, queue):
    import os as child_os

    queue.put({name: child_os.environ.get(name) for name in names})


def test_a_spawned_child_sees_the_environment_it_was_given(monkeypatch):
    env = gpu_child_env(1, 3)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_report_env, args=(list(env), queue))
    child.start()
    seen = queue.get(timeout=60)
    child.join(timeout=60)
    assert seen == env


# --- CPU core sets --------------------------------------------------------------------


def _assert_disjoint(sets):
    flat = [cpu for s in sets for cpu in s]
    assert len(flat) == len(set(flat))


def test_core_sets_keep_the_reserved_cpu_free_when_there_is_room():
    sets = cpu_core_sets(3, 2, set(range(8)))
    assert sets == [{1, 2}, {3, 4}, {5, 6}]


def test_core_sets_use_the_reserved_cpu_before_shortening_threads():
    assert cpu_core_sets(2, 2, {0, 1, 2, 3}) == [{0, 1}, {2, 3}]


def test_fewer_cpus_than_asked_splits_evenly_and_keeps_reserve_if_possible():
    sets = cpu_core_sets(2, 4, set(range(6)))
    assert sets == [{1, 2, 3}, {4, 5}]
    _assert_disjoint(sets)
    assert cpu_core_sets(2, 1, {0, 1}) == [{0}, {1}]  # a two-core box runs two children


def test_core_sets_follow_the_allowed_cpus_not_their_count():
    sets = cpu_core_sets(2, 2, {4, 5, 10, 11, 12})
    assert sets == [{5, 10}, {11, 12}]


def test_more_children_than_cpus_is_a_config_error():
    with pytest.raises(ConfigError, match=r"--cpu-procs 3: .* at least 3 CPUs; .* 2 \(0,1\)"):
        cpu_core_sets(3, 1, {0, 1})


def test_no_cpu_children_and_bad_counts():
    assert cpu_core_sets(0, 4, {0, 1}) == []
    with pytest.raises(ConfigError, match="--threads-per-proc"):
        cpu_core_sets(1, 0, {0, 1})


def test_core_sets_are_applicable_as_real_affinity():
    allowed = os.sched_getaffinity(0)
    for cpus in cpu_core_sets(len(allowed), 1, allowed):
        os.sched_setaffinity(0, cpus)
        assert os.sched_getaffinity(0) == cpus
    os.sched_setaffinity(0, allowed)


# --- CUDA error classification ----------------------------------------------------


class OutOfMemoryError(RuntimeError):
    """Named like torch.cuda.OutOfMemoryError, whose message may not say 'CUDA'."""


@pytest.mark.parametrize(
    "message",
    [
        "CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 79.10 GiB total capacity)",
        "CUDA failed with error out of memory",  # CTranslate2
        "CUDA failure 2: out of memory ; GPU=0 ; hostname=h ; expr=cudaMalloc",  # onnxruntime
        "CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
        "cudaErrorMemoryAllocation",
    ],
)
def test_out_of_memory_messages(message):
    assert classify_cuda_error(message) == "oom"
    assert classify_cuda_error(RuntimeError(message)) == "oom"


def test_out_of_memory_by_exception_type():
    assert classify_cuda_error(OutOfMemoryError("Tried to allocate 2.00 GiB")) == "oom"


@pytest.mark.parametrize(
    ("message", "hardware"),
    [
        ("CUDA error: an illegal memory access was encountered", False),
        ("CUDA error: unspecified launch failure", False),
        ("CUDA error: device-side assert triggered", False),
        ("CUDA error: misaligned address", False),
        ("CUDA error: uncorrectable ECC error encountered", True),
        ("NVML: GPU is lost", True),
        ("NVRM: Xid (PCI:0000:3b:00): 79, GPU has fallen off the bus.", True),
        ("CUDA error: no CUDA-capable device is detected", True),
    ],
)
def test_fatal_errors_and_which_blame_the_hardware(message, hardware):
    assert classify_cuda_error(message) == "fatal"
    assert is_device_fault(message) is hardware


def test_not_a_cuda_error():
    assert classify_cuda_error(ValueError("bad input")) is None
    assert classify_cuda_error(MemoryError("Unable to allocate 3 GiB for an array")) is None
    assert classify_cuda_error("") is None


def test_the_cause_chain_is_read_and_fatal_wins():
    try:
        try:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        except RuntimeError as inner:
            raise ValueError("transcription failed") from inner
    except ValueError as outer:
        assert classify_cuda_error(outer) == "fatal"
    both = "CUDA out of memory\nCUDA error: an illegal memory access was encountered"
    assert classify_cuda_error(both) == "fatal"


def test_a_cyclic_exception_chain_terminates():
    a, b = RuntimeError("a"), RuntimeError("CUDA out of memory")
    a.__context__, b.__context__ = b, a
    assert classify_cuda_error(a) == "oom"


def test_transfer_threads_keep_off_the_cores_cpu_children_are_pinned_to() -> None:
    from morag_worker.supervisor.placement import supervisor_cpus

    assert supervisor_cpus({0, 1}, [{1}]) == {0}
    assert supervisor_cpus(set(range(16)), [{1, 2}, {3, 4}]) == {0, *range(5, 16)}
    assert supervisor_cpus({0, 1}, [{0}, {1}]) is None  # children hold every core
    assert supervisor_cpus({0, 1, 2, 3}, []) is None  # no CPU children: anywhere
