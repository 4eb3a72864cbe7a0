"""Supervisor configuration: flags > environment > ``.env`` > defaults.

The seed's flags and variable names keep working (``--server-url``/``MORAG_SERVER_URL``,
``--max-concurrent``/``MAX_CONCURRENT_TASKS`` …). Every problem is reported as one
:class:`~morag_worker.errors.ConfigError` line naming the setting; the CLI turns it into
exit code 2 before any child starts.
"""

from __future__ import annotations

import argparse
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from morag_worker import settings as processor_settings
from morag_worker.argparsing import Parser, add_version
from morag_worker.connection import server_url_problem
from morag_worker.errors import ConfigError
from morag_worker.links.settings import (
    OWN_PROTOCOL,
    REMOTE_JOBS,
    parse_content_types,
    parse_protocol,
    state_dir,
)
from morag_worker.options import Option, add_options, merged_environment, parse_bool, raw_value
from morag_worker.settings import ProcessorSettings
from morag_worker.sizes import Amount, MemoryLimit, parse_amount, parse_memory_limit

__all__ = ["SupervisorConfig", "build_parser", "load_config", "merged_environment"]

POOLS = ("gpu", "cpu")
#: The mapping ARCHITECTURE.md describes: models on GPUs, parsing on CPUs.
DEFAULT_POOL_TYPES = "gpu=audio,video,image,youtube;cpu=document,web"

#: (flag, environment variables in order of precedence, default, help). The names of
#: MoRAG's own remote worker (``MORAG_API_BASE_URL``, ``MORAG_WORKER_*``, ``MORAG_TEMP_DIR``)
#: come after this project's, so a setting of both kinds is decided by the latter.
_TABLE: list[tuple[str, tuple[str, ...], str, str]] = [
    (
        "--server-protocol",
        ("MORAG_SERVER_PROTOCOL",),
        OWN_PROTOCOL,
        "morag (a morag-server) or morag-remote-jobs (a MoRAG server's /api/v1/remote-jobs)",
    ),
    (
        "--server-url",
        ("MORAG_SERVER_URL", "MORAG_API_BASE_URL"),
        "http://127.0.0.1:8000",
        "the server's base URL",
    ),
    (
        "--api-key",
        ("MORAG_API_KEY",),
        "",
        "worker API key (prefer --api-key-file); optional with morag-remote-jobs",
    ),
    ("--api-key-file", ("MORAG_API_KEY_FILE",), "", "file holding the API key"),
    ("--worker-id", ("MORAG_WORKER_ID",), "", "stable id of this worker (default: host name)"),
    ("--worker-type", ("WORKER_TYPE",), "", "gpu or cpu (default: gpu when --gpus names any)"),
    (
        "--poll-interval",
        ("POLL_INTERVAL", "MORAG_WORKER_POLL_INTERVAL"),
        "5",
        "longest a lease long-poll waits, seconds; with morag-remote-jobs the longest "
        "pause between polls while the server has no job",
    ),
    (
        "--content-types",
        ("MORAG_WORKER_CONTENT_TYPES",),
        "",
        "morag-remote-jobs: content types to poll for, comma-separated (default: every "
        "type this worker runs)",
    ),
    (
        "--max-concurrent",
        ("MAX_CONCURRENT_TASKS", "MORAG_WORKER_MAX_CONCURRENT_JOBS"),
        "",
        "CPU children when no GPU is used (default 1)",
    ),
    ("--timeout", ("MORAG_TASK_TIMEOUT",), "86400", "cap on any task's run time, seconds"),
    ("--health-port", ("MORAG_HEALTH_PORT",), "8080", "port of /health /ready /status /metrics"),
    (
        "--health-host",
        ("MORAG_HEALTH_HOST",),
        "127.0.0.1",
        "address the health endpoint binds (0.0.0.0 in containers, for probes and scrapes)",
    ),
    (
        "--status-token",
        ("MORAG_STATUS_TOKEN",),
        "",
        "lets other hosts read /status with 'Authorization: Bearer TOKEN'; without it "
        "/status answers loopback callers only",
    ),
    (
        "--min-free-disk",
        ("MORAG_MIN_FREE_DISK",),
        "1G",
        "stop leasing while the work dir has less free space: a size (2G) or %% of the "
        "disk; 0 turns the check off",
    ),
    (
        "--max-result-bytes",
        ("MORAG_MAX_RESULT_BYTES",),
        "64M",
        "largest result a task may return (bigger ones fail as result_too_large); the "
        "server's own limit, if lower, wins",
    ),
    ("--gpus", ("MORAG_GPUS",), "", "0,1 | all | none (default: all for gpu workers)"),
    ("--procs-per-gpu", ("MORAG_PROCS_PER_GPU",), "1", "children per GPU"),
    ("--cpu-procs", ("MORAG_CPU_PROCS",), "", "CPU children (document and web tasks)"),
    (
        "--threads-per-proc",
        ("MORAG_THREADS_PER_PROC", "OMP_NUM_THREADS"),
        "1",
        "threads per child (OMP/MKL)",
    ),
    (
        "--work-dir",
        ("MORAG_WORK_DIR", "MORAG_TEMP_DIR"),
        "",
        "per-task scratch space (default: a temp dir, removed at exit)",
    ),
    (
        "--state-dir",
        ("MORAG_STATE_DIR",),
        "",
        "what must outlive a restart: results not yet delivered (morag-remote-jobs). "
        "Default: $STATE_DIRECTORY (systemd), else $XDG_STATE_HOME/morag-worker, else "
        "~/.local/state/morag-worker",
    ),
    (
        "--drain-timeout",
        ("MORAG_DRAIN_TIMEOUT",),
        "300",
        "seconds running tasks may finish on stop",
    ),
    ("--prefetch", ("MORAG_PREFETCH",), "1", "tasks leased ahead of free children"),
    ("--plugin", ("MORAG_PLUGINS",), "", "comma-separated modules that register processors"),
    ("--preload", ("MORAG_PRELOAD",), "", "models warmed at child start, e.g. whisper:base"),
    (
        "--max-memory-per-child",
        ("MORAG_MAX_MEMORY_PER_CHILD",),
        "",
        "RSS per child with its subprocesses: SOFT[,HARD], sizes (6G, 512M) or %% of RAM",
    ),
    (
        "--max-gpu-memory-per-child",
        ("MORAG_MAX_GPU_MEMORY_PER_CHILD",),
        "",
        "GPU memory per child (NVML): SOFT[,HARD], sizes (20G) or %% of the GPU",
    ),
    (
        "--max-tasks-per-child",
        ("MORAG_MAX_TASKS_PER_CHILD",),
        "0",
        "replace a child after about this many tasks (10%% jitter); 0 = never",
    ),
    (
        "--child-unresponsive-timeout",
        ("MORAG_CHILD_UNRESPONSIVE_TIMEOUT",),
        "60",
        "seconds an idle child may go without a heartbeat before it is restarted",
    ),
    (
        "--quarantine-probe",
        ("MORAG_QUARANTINE_PROBE",),
        "60",
        "seconds before a quarantined child is tried again with a fresh process (doubling "
        "with each quarantine, up to 30 minutes)",
    ),
    (
        "--pool-types",
        ("MORAG_POOL_TYPES",),
        DEFAULT_POOL_TYPES,
        "which pool runs which task types: gpu=TYPE,…;cpu=TYPE,…",
    ),
    ("--log-level", ("LOG_LEVEL",), "INFO", "DEBUG, INFO, WARNING, ERROR"),
    ("--log-format", ("MORAG_LOG_FORMAT",), "auto", "auto, json or text"),
]
_OPTIONS = [Option(flag, envs, default, help_text) for flag, envs, default, help_text in _TABLE]
_BY_FLAG = {option.flag: option for option in _OPTIONS}


@dataclass(frozen=True)
class SupervisorConfig:
    server_url: str
    api_key: str
    worker_id: str
    worker_type: str
    poll_interval_s: float
    max_concurrent: int
    task_timeout_cap_s: float
    health_host: str
    health_port: int
    gpus_spec: str
    procs_per_gpu: int
    cpu_procs: int
    threads_per_proc: int
    work_dir: Path | None
    drain_timeout_s: float
    prefetch: int
    force_cpu: bool
    plugins: tuple[str, ...]
    preload: tuple[str, ...]
    log_level: str
    log_format: str
    processing: ProcessorSettings = field(default_factory=ProcessorSettings)
    max_memory: MemoryLimit = field(default_factory=MemoryLimit)
    max_gpu_memory: MemoryLimit = field(default_factory=MemoryLimit)
    max_tasks_per_child: int = 0
    unresponsive_s: float = 60.0
    pool_types: dict[str, frozenset[str]] = field(
        default_factory=lambda: parse_pool_types(DEFAULT_POOL_TYPES)
    )
    #: The worker id was configured (not the ``<hostname>-<type>`` default).
    worker_id_explicit: bool = False
    status_token: str = ""
    #: Free space the work dir keeps before leasing stops (bytes or a share of the disk).
    min_free_disk: Amount = field(default_factory=lambda: Amount(bytes=1 << 30))
    max_result_bytes: int = 64 << 20
    quarantine_probe_s: float = 60.0
    #: :data:`OWN_PROTOCOL` or :data:`REMOTE_JOBS`.
    server_protocol: str = OWN_PROTOCOL
    #: morag-remote-jobs: content types to poll for (empty: every type this worker runs).
    content_types: tuple[str, ...] = ()
    #: Durable state (results waiting for delivery); never removed by the supervisor.
    state_dir: Path = field(default_factory=lambda: Path(".morag-worker-state"))


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="morag-supervisor",
        description="Lease tasks from a morag-server and run them in GPU/CPU child processes. "
        "Flags win over environment variables, which win over the --env-file.",
    )
    add_version(parser)
    add_options(parser, _OPTIONS)
    parser.add_argument(
        "--env-file",
        default=os.environ.get("MORAG_ENV_FILE", ".env"),
        help="dotenv file read under the environment [MORAG_ENV_FILE; default .env]",
    )
    processor_settings.add_arguments(parser)
    return parser


def _lookup(args: argparse.Namespace, env: Mapping[str, str], flag: str) -> str:
    return raw_value(args, env, _BY_FLAG[flag])


def _number(flag: str, raw: str, kind: type, minimum: float) -> float:
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{flag}: expected {kind.__name__}, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{flag}: must be at least {minimum}, got {raw!r}")
    return float(value)


def parse_pool_types(text: str, flag: str = "--pool-types") -> dict[str, frozenset[str]]:
    """``gpu=audio,video;cpu=document,web`` → ``{"gpu": {...}, "cpu": {...}}``."""
    mapping: dict[str, frozenset[str]] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        pool, sep, types = part.partition("=")
        pool = pool.strip().lower()
        if not sep or pool not in POOLS:
            raise ConfigError(
                f"{flag}: expected POOL=TYPE,TYPE;… with POOL gpu or cpu, got {part!r}"
            )
        if pool in mapping:
            raise ConfigError(f"{flag}: pool {pool!r} is named twice")
        names = frozenset(t.strip().lower() for t in types.split(",") if t.strip())
        for other, seen in mapping.items():
            if names & seen:
                raise ConfigError(
                    f"{flag}: {sorted(names & seen)[0]!r} is in both {other} and {pool}"
                )
        mapping[pool] = names
    return mapping


def _is_set(args: argparse.Namespace, env: Mapping[str, str], flag: str) -> bool:
    """Whether ``flag`` was given on the command line or through one of its variables."""
    option = _BY_FLAG[flag]
    if getattr(args, option.name, None) is not None:
        return True
    return any(env.get(name, "") != "" for name in option.envs)


def _api_key(args: argparse.Namespace, env: Mapping[str, str], required: bool = True) -> str:
    key = _lookup(args, env, "--api-key")
    key_file = _lookup(args, env, "--api-key-file")
    if not key and key_file:
        try:
            key = Path(key_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"--api-key-file: cannot read {key_file}: {exc.strerror}") from None
    if not key and required:
        raise ConfigError(
            "--api-key: no API key given; set MORAG_API_KEY, --api-key or "
            "--api-key-file (create one with 'morag keys create --role worker')"
        )
    if any(c.isspace() for c in key):
        raise ConfigError("--api-key: the key contains whitespace; check the file or variable")
    return key


def _worker_shape(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[str, str, bool]:
    try:
        force_cpu = parse_bool(env.get("MORAG_FORCE_CPU", ""), "MORAG_FORCE_CPU")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    worker_type = _lookup(args, env, "--worker-type").lower()
    gpus = _lookup(args, env, "--gpus").lower()
    if worker_type not in ("", "gpu", "cpu"):
        raise ConfigError(f"--worker-type: expected gpu or cpu, got {worker_type!r}")
    if not gpus:
        gpus = "all" if worker_type == "gpu" and not force_cpu else "none"
    if force_cpu or worker_type == "cpu":
        gpus = "none"
    if not worker_type:
        worker_type = "cpu" if gpus == "none" else "gpu"
    return worker_type, gpus, force_cpu


def load_config(
    argv: list[str] | None = None, environ: Mapping[str, str] | None = None
) -> SupervisorConfig:
    args = build_parser().parse_args(argv)
    env = merged_environment(args.env_file, os.environ if environ is None else environ)
    get = lambda flag: _lookup(args, env, flag)  # noqa: E731
    server_url = get("--server-url")
    problem = server_url_problem(server_url)
    if problem is not None:
        raise ConfigError(problem)
    worker_type, gpus, force_cpu = _worker_shape(args, env)
    log_format = get("--log-format").lower()
    if log_format not in ("auto", "json", "text"):
        raise ConfigError(f"--log-format: expected auto, json or text, got {log_format!r}")
    try:
        processing = processor_settings.from_namespace(args, env)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    work_dir = get("--work-dir")
    protocol = parse_protocol(get("--server-protocol"))
    remote = protocol == REMOTE_JOBS
    return SupervisorConfig(
        server_protocol=protocol,
        content_types=parse_content_types(get("--content-types"), protocol),
        state_dir=state_dir(get("--state-dir"), env),
        server_url=server_url.rstrip("/"),
        # MoRAG's remote-jobs API has no authentication; a key, when set, is sent anyway
        # (as MoRAG's own worker does), for a proxy in front of it.
        api_key=_api_key(args, env, required=not remote),
        worker_id=get("--worker-id") or f"{socket.gethostname()}-{worker_type}",
        worker_type=worker_type,
        poll_interval_s=_number("--poll-interval", get("--poll-interval"), float, 0.1),
        max_concurrent=int(_number("--max-concurrent", get("--max-concurrent") or "1", int, 1)),
        task_timeout_cap_s=_number("--timeout", get("--timeout"), float, 1),
        health_host=get("--health-host"),
        health_port=int(_number("--health-port", get("--health-port"), int, 0)),
        gpus_spec=gpus,
        procs_per_gpu=int(_number("--procs-per-gpu", get("--procs-per-gpu"), int, 1)),
        cpu_procs=int(_number("--cpu-procs", get("--cpu-procs") or "-1", int, -1)),
        threads_per_proc=int(_number("--threads-per-proc", get("--threads-per-proc"), int, 1)),
        work_dir=Path(work_dir) if work_dir else None,
        drain_timeout_s=_number("--drain-timeout", get("--drain-timeout"), float, 0),
        # A prefetched remote job cannot be handed back: poll only for free children
        # unless the operator asks for more.
        prefetch=int(
            _number(
                "--prefetch",
                get("--prefetch") if not remote or _is_set(args, env, "--prefetch") else "0",
                int,
                0,
            )
        ),
        force_cpu=force_cpu,
        plugins=tuple(p.strip() for p in get("--plugin").split(",") if p.strip()),
        preload=tuple(p.strip() for p in get("--preload").split(",") if p.strip()),
        log_level=get("--log-level").upper(),
        log_format=log_format,
        processing=processing,
        max_memory=parse_memory_limit("--max-memory-per-child", get("--max-memory-per-child")),
        max_gpu_memory=parse_memory_limit(
            "--max-gpu-memory-per-child", get("--max-gpu-memory-per-child")
        ),
        max_tasks_per_child=int(
            _number("--max-tasks-per-child", get("--max-tasks-per-child"), int, 0)
        ),
        unresponsive_s=_number(
            "--child-unresponsive-timeout", get("--child-unresponsive-timeout"), float, 1
        ),
        pool_types=parse_pool_types(get("--pool-types")),
        worker_id_explicit=bool(get("--worker-id")),
        quarantine_probe_s=_number("--quarantine-probe", get("--quarantine-probe"), float, 0.1),
        status_token=get("--status-token"),
        min_free_disk=_optional_amount("--min-free-disk", get("--min-free-disk")),
        max_result_bytes=_optional_amount("--max-result-bytes", get("--max-result-bytes")).bytes,
    )


def _optional_amount(flag: str, raw: str) -> Amount:
    """A size or share; ``0`` (or empty) means none."""
    if raw.strip() in ("", "0"):
        return Amount()
    amount = parse_amount(flag, raw)
    if flag == "--max-result-bytes" and amount.share:
        raise ConfigError(f"{flag}: expected a size like 256M, got {raw!r}")
    return amount
