"""File transfer speed against the machine's SHA-256 speed, measured in the same run.

- SHA-256: ``hashlib.sha256`` over a 1 MiB buffer, the baseline (every byte of an upload
  and of a download is hashed once, so hashing bounds both).
- upload: ``POST /api/v1/tasks`` multipart, streamed from a file by the ``morag`` CLI's
  own client (:meth:`morag_worker.cli.api.Api.submit_file`), into a real morag-server.
- download: the supervisor's own code (:meth:`morag_worker.client.WorkerClient.download`,
  which the supervisor's transfer threads call) fetching the leased task's input and
  verifying its sha256.
- resumable upload: the same file through an upload session (``POST /api/v1/uploads``,
  ``PATCH`` from the offset the server holds, then a JSON task naming it), by
  :meth:`Api.submit_file_resumable`.

Each is run on a large input (``--size-mb``, 512 by default) and a small one
(``--small-mb``, 8) repeated to the same total, so the per-byte speeds compare. Peak
RSS of the server and of this client process are sampled every 10 ms during each
transfer, minus their level before it: streamed transfers stay flat whatever the size.
Goal (issue 12): upload and download each >= 0.60 of SHA-256 speed.

Run with ``make bench`` (or ``python bench/transfer.py [--size-mb N]``).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from morag_worker.cli.api import Api
from morag_worker.cli.local import free_port, start_server
from morag_worker.client import WorkerClient
from morag_worker.protocol import InputFile, LeaseRequest, RegisterRequest

MB = 1_000_000
GOAL = 0.60


def sha256_speed(total: int) -> float:
    """MB/s of hashlib.sha256 over ``total`` bytes fed in 1 MiB pieces."""
    buf = os.urandom(1 << 20)
    best = 0.0
    for _ in range(3):
        digest = hashlib.sha256()
        start = time.perf_counter()
        for _ in range(max(1, total // len(buf))):
            digest.update(buf)
        elapsed = time.perf_counter() - start
        best = max(best, max(1, total // len(buf)) * len(buf) / elapsed / MB)
    return best


def make_file(path: Path, size: int) -> Path:
    """A file of ``size`` random bytes, written out (not sparse)."""
    block = os.urandom(1 << 20)
    with path.open("wb") as out:
        left = size
        while left > 0:
            # vary the blocks so that no two files (or pieces) share a hash
            piece = hashlib.sha256(os.urandom(16)).digest() + block[32:]
            out.write(piece[: min(left, len(piece))])
            left -= len(piece)
    return path


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


class PeakRss:
    """Samples the RSS of some processes every 10 ms; ``peaks`` are above the start."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.base = {name: p.memory_info().rss for name, p in self.procs.items()}
        self.peak = dict(self.base)
        self.cpu0 = {name: _cpu(p) for name, p in self.procs.items()}
        self.cpu: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            for name, proc in self.procs.items():
                self.peak[name] = max(self.peak[name], proc.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.cpu = {name: _cpu(p) - self.cpu0[name] for name, p in self.procs.items()}

    def growth_mb(self, name: str) -> float:
        return (self.peak[name] - self.base[name]) / MB


@dataclass
class Sample:
    """One direction of one row: totals over its transfers."""

    bytes: int = 0
    seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=lambda: {"server": 0.0, "client": 0.0})
    rss: dict[str, float] = field(default_factory=lambda: {"server": 0.0, "client": 0.0})

    def add(self, size: int, seconds: float, rss: PeakRss) -> None:
        self.bytes += size
        self.seconds += seconds
        for name in self.cpu:
            self.cpu[name] += rss.cpu[name]
            self.rss[name] = max(self.rss[name], rss.growth_mb(name))


class Bench:
    def __init__(self, root: Path) -> None:
        self.root = root
        port = free_port()
        self.server = start_server(root / "server", port, "--no-index", "--log-level", "WARNING")
        self.url = f"http://127.0.0.1:{port}"
        admin = Api(self.url, (root / "server" / "admin.key").read_text().strip())
        self.user = Api(
            self.url, admin.post_json("/api/v1/keys", {"user_id": "b", "role": "user"})["key"]
        )
        worker_key = admin.post_json("/api/v1/keys", {"user_id": "b", "role": "worker"})["key"]
        self.worker = WorkerClient(self.url, worker_key, "bench-transfer")
        reply = self.worker.register(
            RegisterRequest(worker_id="bench-transfer", task_types=["document"], capacity=64),
            retry_for_s=10,
        )
        self.worker.set_instance(reply.instance_id)
        self.pids = {"server": self.server.pid, "client": os.getpid()}

    def close(self) -> None:
        self.worker.close()
        self.server.stop()

    def upload(self, path: Path, resumable: bool, sample: Sample) -> None:
        with PeakRss(self.pids) as rss:
            start = time.perf_counter()
            if resumable:
                self.user.submit_file(path, "document", {}, resumable=True)
            else:
                self.user.submit_file(path, "document", {}, resumable=False)
            elapsed = time.perf_counter() - start
        sample.add(path.stat().st_size, elapsed, rss)

    def lease_input(self) -> InputFile:
        reply = self.worker.lease(LeaseRequest(max_tasks=1, wait_seconds=5), retry_for_s=0)
        [task] = reply.tasks
        return task.input_files[0]

    def download(self, file: InputFile, dest: Path, sample: Sample) -> None:
        dest.unlink(missing_ok=True)
        with PeakRss(self.pids) as rss:
            start = time.perf_counter()
            self.worker.download(file, dest, retry_for_s=30)
            elapsed = time.perf_counter() - start
        dest.unlink()
        sample.add(file.size, elapsed, rss)


def run_size(bench: Bench, size: int, copies: int, resumable: bool) -> tuple[Sample, Sample]:
    """Upload, then download, ``copies`` files of ``size`` bytes; (upload, download)."""
    up, down = Sample(), Sample()
    for i in range(copies):
        path = make_file(bench.root / f"in-{size}-{i}.bin", size)
        bench.upload(path, resumable, up)
        path.unlink()
        file = bench.lease_input()
        bench.download(file, bench.root / "out.bin", down)
        shutil.rmtree(bench.root / "server" / "files" / file.file_id[:2], ignore_errors=True)
    return up, down


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=512, help="the large input, MB")
    parser.add_argument("--small-mb", type=int, default=8, help="the small input, MB")
    args = parser.parse_args()
    if args.size_mb < 1 or args.small_mb < 1 or args.small_mb > args.size_mb:
        parser.error("--size-mb and --small-mb must be >= 1, and --small-mb <= --size-mb")
    large, small = args.size_mb * MB, args.small_mb * MB
    copies = max(1, large // small)
    root = Path(tempfile.mkdtemp(prefix="bench-transfer-"))
    bench = Bench(root)
    rows: list[tuple[str, Sample, float]] = []
    runs = [
        (f"{large // MB} MB", large, 1, False),
        (f"{copies} x {small // MB} MB", small, copies, False),
        (f"{large // MB} MB, resumable", large, 1, True),
    ]
    try:
        for label, size, count, resumable in runs:
            print(f"transferring {label} …", flush=True)
            # The baseline is measured next to each row: on a shared machine the speed
            # of a core moves from minute to minute.
            sha = sha256_speed(min(large, 256 * MB))
            up, down = run_size(bench, size, count, resumable)
            sha = (sha + sha256_speed(min(large, 256 * MB))) / 2
            rows.append((f"upload {label}", up, sha))
            if not resumable:
                rows.append((f"download {label}", down, sha))
    finally:
        bench.close()
        shutil.rmtree(root, ignore_errors=True)
    print()
    print(
        "SHA-256 baseline: hashlib over 1 MiB pieces, measured before and after each row. "
        "CPU: process\ntime per MB moved (the server's; the client's is the CLI's for an "
        "upload, the supervisor client's\nfor a download), as a multiple of hashing a MB. "
        "RSS: peak growth during the transfer."
    )
    print()
    header = (
        f"| {'transfer':<26} | {'MB/s':>6} | {'SHA-256 MB/s':>12} | {'ratio':>5} "
        f"| {'goal 0.60':>9} "
        f"| {'server CPU':>10} | {'client CPU':>10} | {'server RSS':>10} | {'client RSS':>10} |"
    )
    print(header)
    print("|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|")
    for label, sample, sha in rows:
        speed = sample.bytes / sample.seconds / MB
        ratio = speed / sha
        hash_cpu_s = sample.bytes / MB / sha
        print(
            f"| {label:<26} | {speed:>6,.0f} | {sha:>12,.0f} | {ratio:>5.2f} "
            f"| {'met' if ratio >= GOAL else 'missed':>9} "
            f"| {sample.cpu['server'] / hash_cpu_s:>9.2f}x "
            f"| {sample.cpu['client'] / hash_cpu_s:>9.2f}x "
            f"| {sample.rss['server']:>7.1f} MB | {sample.rss['client']:>7.1f} MB |"
        )


if __name__ == "__main__":
    sys.exit(main())
