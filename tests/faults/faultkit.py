"""Helpers for the fault tests: a server that knows the fault task types, supervisors
that load them (optionally on fake GPUs), and readers for /metrics and task state."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import requests
from harness import Cluster
from prometheus_client.parser import text_string_to_metric_families

from morag_worker.cli.api import Api
from morag_worker.cli.local import Proc, free_port, wait_http

HERE = Path(__file__).parent
FIXTURES = HERE.parent / "fixtures"
FAULT_TYPES = (
    "hog,hang,crash,cudaerr,envcheck,bigerror,bigresult,unserialisable,garbage,halfmessage,assume"
)
SERVER_ARGS = ("--extra-task-types", FAULT_TYPES)


def start(
    cluster: Cluster,
    key_file: Path,
    *args: str,
    fake_gpus: int = 0,
    env: dict[str, str] | None = None,
    wait_ready: bool = True,
) -> tuple[Proc, int]:
    """A real supervisor with ``--plugin fault_processors``; with ``fake_gpus`` it runs
    through ``fake_gpu_supervisor.py`` (FakeNvml, a test double: no GPU here)."""
    health = free_port()
    entry = (
        [str(HERE / "fake_gpu_supervisor.py")]
        if fake_gpus
        else ["-m", "morag_worker.cli.supervisor"]
    )
    path = os.pathsep.join(p for p in (str(FIXTURES), os.environ.get("PYTHONPATH", "")) if p)
    proc = Proc(
        [
            sys.executable,
            *entry,
            "--server-url",
            cluster.url,
            "--api-key-file",
            str(key_file),
            "--health-port",
            str(health),
            "--health-host",
            "127.0.0.1",
            "--threads-per-proc",
            "1",
            "--plugin",
            "fault_processors",
            *args,
        ],
        cluster.root / f"supervisor-{len(cluster.supervisors)}.log",
        {
            "MORAG_LOG_FORMAT": "json",
            "PYTHONPATH": path,
            "FAKE_GPUS": str(fake_gpus),
            **(env or {}),
        },
    )
    cluster.supervisors.append(proc)
    if wait_ready:
        wait_http(f"http://127.0.0.1:{health}/ready", 120, proc.proc)
    return proc, health


def submit(
    api: Api,
    task_type: str,
    *,
    max_attempts: int | None = None,
    timeout_seconds: float | None = None,
    **parameters: Any,
) -> str:
    """Submit a fault task (the server wants one input file for a non-URL type)."""
    form = {"task_type": task_type, "parameters": json.dumps(parameters)}
    if max_attempts is not None:
        form["max_attempts"] = str(max_attempts)
    if timeout_seconds is not None:
        form["timeout_seconds"] = str(timeout_seconds)
    reply = api.session.post(
        f"{api.base}/api/v1/tasks",
        data=form,
        files={"files": ("input.txt", b"fault test input\n", "text/plain")},
        timeout=30,
    )
    assert reply.status_code == 201, reply.text
    return str(reply.json()["task_id"])


def task(api: Api, task_id: str) -> dict[str, Any]:
    info: dict[str, Any] = api.get(f"/api/v1/tasks/{task_id}")
    return info


def metrics(health: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the supervisor's /metrics, parsed by prometheus_client's parser:
    ``{(name, ((label, value), …)): value}``."""
    text = requests.get(f"http://127.0.0.1:{health}/metrics", timeout=5).text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def restarts(health: int, reason: str) -> float:
    return metrics(health).get(("morag_worker_child_restarts_total", (("reason", reason),)), -1.0)


def ready(health: int) -> tuple[int, dict[str, Any]]:
    reply = requests.get(f"http://127.0.0.1:{health}/ready", timeout=5)
    return reply.status_code, reply.json()
