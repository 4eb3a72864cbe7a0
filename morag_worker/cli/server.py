"""``morag-server``: the coordinator (API keys, task queue, files, results, search)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from morag_worker.server.db import SQLITE_SYNC_MODES
from morag_worker.server.limits import RequestLimits
from morag_worker.server.queue import QueuePolicy
from morag_worker.server.state import ServerConfig

#: Files the server creates (database, uploads, vector store) are owner-only.
SERVER_UMASK = 0o077


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise SystemExit(f"morag-server: {name}: expected a number, got {raw!r}") from None


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"morag-server: {name}: expected a whole number, got {raw!r}") from None


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SystemExit(f"morag-server: {name}: expected true or false, got {raw!r}")


def _add_storage_flags(p: argparse.ArgumentParser) -> None:
    env = os.environ.get
    p.add_argument(
        "--data-dir",
        default=env("MORAG_DATA_DIR", "./morag-data"),
        help="database, files, Qdrant and admin.key live here [MORAG_DATA_DIR]",
    )
    p.add_argument(
        "--database-url",
        default=env("MORAG_DATABASE_URL", ""),
        help="postgresql://… for PostgreSQL; default SQLite in the data dir [MORAG_DATABASE_URL]",
    )
    p.add_argument(
        "--sqlite-synchronous",
        default=env("MORAG_SQLITE_SYNCHRONOUS", "full").lower(),
        choices=SQLITE_SYNC_MODES,
        help="full: every acknowledged write survives a power loss; normal: faster, survives "
        "a crash of the server but may lose the last writes on a power loss "
        "(docs/operations.md) [MORAG_SQLITE_SYNCHRONOUS; full]",
    )


def _add_limit_flags(p: argparse.ArgumentParser) -> None:
    """Request limits (docs/protocol.md, Limits) and the file store's upkeep."""
    d = RequestLimits()
    p.add_argument(
        "--max-upload-bytes",
        type=int,
        default=_env_int("MORAG_MAX_UPLOAD_BYTES", 2 << 30),
        help="largest uploaded file [MORAG_MAX_UPLOAD_BYTES; 2 GiB]",
    )
    p.add_argument(
        "--max-body-bytes",
        type=int,
        default=_env_int("MORAG_MAX_BODY_BYTES", d.max_body_bytes),
        help="largest JSON body (and multipart text field), results excepted "
        "[MORAG_MAX_BODY_BYTES; 1 MiB]",
    )
    p.add_argument(
        "--max-result-bytes",
        type=int,
        default=_env_int("MORAG_MAX_RESULT_BYTES", d.max_result_bytes),
        help="largest result call, single or batched [MORAG_MAX_RESULT_BYTES; 64 MiB]",
    )
    p.add_argument(
        "--body-timeout",
        type=float,
        default=_env_float("MORAG_BODY_TIMEOUT", d.body_timeout_s),
        help="seconds a request body may send nothing before it is refused (408) "
        f"[MORAG_BODY_TIMEOUT; {d.body_timeout_s:g}]",
    )
    p.add_argument(
        "--min-body-rate",
        type=float,
        default=_env_float("MORAG_MIN_BODY_RATE", d.min_body_rate),
        help="bytes/s a request body must average after --body-timeout seconds (408) "
        f"[MORAG_MIN_BODY_RATE; {d.min_body_rate:g}]",
    )
    p.add_argument(
        "--max-long-polls-per-key",
        type=int,
        default=_env_int("MORAG_MAX_LONG_POLLS_PER_KEY", d.max_long_polls_per_key),
        help="lease long-polls one key may have waiting at once (429 beyond) "
        f"[MORAG_MAX_LONG_POLLS_PER_KEY; {d.max_long_polls_per_key}]",
    )
    p.add_argument(
        "--file-grace",
        type=float,
        default=_env_float("MORAG_FILE_GRACE", 3600.0),
        help="seconds before the sweep removes a stored file no task refers to, or an "
        "abandoned partial upload [MORAG_FILE_GRACE; 3600]",
    )
    p.add_argument(
        "--min-free-disk-bytes",
        type=int,
        default=_env_int("MORAG_MIN_FREE_DISK_BYTES", 256 << 20),
        help="/health says degraded below this much free space in the data dir "
        "[MORAG_MIN_FREE_DISK_BYTES; 256 MiB]",
    )


def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    p = argparse.ArgumentParser(
        prog="morag-server",
        description=__doc__,
        epilog="`morag-server migrate [--check]` applies or reports schema migrations "
        "without serving.",
    )
    p.add_argument("--host", default=env("MORAG_SERVER_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(env("MORAG_SERVER_PORT", "8000")))
    _add_storage_flags(p)
    p.add_argument(
        "--no-auto-migrate",
        dest="auto_migrate",
        action="store_false",
        default=_env_bool("MORAG_AUTO_MIGRATE", True),
        help="do not migrate the schema and data dir at start; refuse to start unless they "
        "are current (run `morag-server migrate` first) [MORAG_AUTO_MIGRATE=false]",
    )
    _add_limit_flags(p)
    p.add_argument(
        "--lease-ttl",
        type=float,
        default=_env_float("MORAG_LEASE_TTL", 30.0),
        help="seconds a lease lasts without a heartbeat",
    )
    p.add_argument("--max-attempts", type=int, default=int(env("MORAG_MAX_ATTEMPTS", "3")))
    p.add_argument(
        "--retry-backoff",
        type=float,
        default=_env_float("MORAG_RETRY_BACKOFF", 2.0),
        help="base seconds of the exponential retry backoff",
    )
    p.add_argument(
        "--max-wait",
        type=float,
        default=_env_float("MORAG_MAX_WAIT", 30.0),
        help="cap on a lease long-poll, seconds",
    )
    p.add_argument(
        "--extra-task-types",
        default=env("MORAG_EXTRA_TASK_TYPES", ""),
        help="comma-separated task types served by worker plugins",
    )
    p.add_argument("--qdrant-url", default=env("MORAG_QDRANT_URL", ""))
    p.add_argument("--qdrant-path", default=env("MORAG_QDRANT_PATH", ""))
    p.add_argument("--qdrant-api-key", default=env("MORAG_QDRANT_API_KEY", ""))
    p.add_argument("--embedding-model", default=env("MORAG_EMBEDDING_MODEL", "all-MiniLM-L6-v2"))
    p.add_argument("--no-index", action="store_true", help="store results without indexing")
    p.add_argument("--log-level", default=env("LOG_LEVEL", "INFO"))
    p.add_argument(
        "--log-format", default=env("MORAG_LOG_FORMAT", "auto"), choices=["auto", "json", "text"]
    )
    return p


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    checks = [
        (args.lease_ttl > 0, "--lease-ttl must be > 0"),
        (args.max_attempts >= 1, "--max-attempts must be >= 1"),
        (args.max_upload_bytes > 0, "--max-upload-bytes must be > 0"),
        (0 < args.max_wait <= 300, "--max-wait must be in (0, 300]"),
        (args.retry_backoff >= 0, "--retry-backoff must be >= 0"),
        (args.max_body_bytes >= 1024, "--max-body-bytes must be >= 1024"),
        (args.max_result_bytes >= 1024, "--max-result-bytes must be >= 1024"),
        (args.body_timeout > 0, "--body-timeout must be > 0"),
        (args.min_body_rate > 0, "--min-body-rate must be > 0"),
        (args.max_long_polls_per_key >= 1, "--max-long-polls-per-key must be >= 1"),
        (args.file_grace >= 1, "--file-grace must be >= 1 (seconds)"),
        (args.min_free_disk_bytes >= 0, "--min-free-disk-bytes must be >= 0"),
        (
            args.sqlite_synchronous in SQLITE_SYNC_MODES,
            f"--sqlite-synchronous (MORAG_SQLITE_SYNCHRONOUS) must be one of {SQLITE_SYNC_MODES}",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise SystemExit(f"morag-server: {message}")
    extra = tuple(t.strip() for t in args.extra_task_types.split(",") if t.strip())
    return ServerConfig(
        data_dir=Path(args.data_dir).resolve(),
        host=args.host,
        port=args.port,
        database_url=args.database_url,
        max_upload_bytes=args.max_upload_bytes,
        max_wait_s=args.max_wait,
        limits=RequestLimits(
            max_body_bytes=args.max_body_bytes,
            max_result_bytes=args.max_result_bytes,
            body_timeout_s=args.body_timeout,
            min_body_rate=args.min_body_rate,
            max_long_polls_per_key=args.max_long_polls_per_key,
        ),
        file_grace_s=args.file_grace,
        min_free_disk_bytes=args.min_free_disk_bytes,
        sqlite_synchronous=args.sqlite_synchronous,
        policy=QueuePolicy(
            lease_ttl_s=args.lease_ttl,
            max_attempts=args.max_attempts,
            backoff_base_s=args.retry_backoff,
        ),
        extra_task_types=extra,
        qdrant_url=args.qdrant_url,
        qdrant_path=args.qdrant_path,
        qdrant_api_key=args.qdrant_api_key,
        embedding_model=args.embedding_model,
        index_results=not args.no_index,
        auto_migrate=args.auto_migrate,
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    os.umask(SERVER_UMASK)
    if argv[:1] == ["migrate"]:
        from morag_worker.cli.server_migrate import run_migrate

        parser = build_parser()
        parser.prog = "morag-server migrate"
        parser.description = "Apply (or with --check, report) schema and data-dir migrations."
        parser.epilog = None
        parser.add_argument(
            "--check",
            action="store_true",
            help="only report: exit 0 when current, 1 when migrations are pending",
        )
        args = parser.parse_args(argv[1:])
        config = config_from_args(args)
        from morag_worker.observability.logging import setup_logging

        setup_logging(args.log_level, "text", component="server")
        return run_migrate(config, check=args.check)
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    from morag_worker.observability.logging import setup_logging

    setup_logging(args.log_level, args.log_format, component="server")
    from morag_worker.cli.server_serve import serve

    return serve(config)


if __name__ == "__main__":
    sys.exit(main())
