"""``morag-server``: the coordinator (API keys, task queue, files, results, search)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from morag_worker.server.queue import QueuePolicy
from morag_worker.server.state import ServerConfig


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise SystemExit(f"morag-server: {name}: expected a number, got {raw!r}") from None


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
    p.add_argument(
        "--max-upload-bytes", type=int, default=int(env("MORAG_MAX_UPLOAD_BYTES", str(2 << 30)))
    )
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
    p.add_argument(
        "--qdrant-path",
        default=env("MORAG_QDRANT_PATH", ""),
        help="Qdrant local-mode data of releases up to 0.1.x, migrated into the embedded "
        "store at start (default <data-dir>/qdrant)",
    )
    p.add_argument(
        "--vector-path",
        default=env("MORAG_VECTOR_PATH", ""),
        help="the embedded vector store's directory (default <data-dir>/vectors); "
        "unused with --qdrant-url",
    )
    p.add_argument("--qdrant-api-key", default=env("MORAG_QDRANT_API_KEY", ""))
    p.add_argument("--embedding-model", default=env("MORAG_EMBEDDING_MODEL", "all-MiniLM-L6-v2"))
    p.add_argument("--no-index", action="store_true", help="store results without indexing")
    p.add_argument(
        "--index-max-attempts",
        type=int,
        default=int(env("MORAG_INDEX_MAX_ATTEMPTS", "5")),
        help="failed attempts before a result is marked failed for indexing",
    )
    p.add_argument(
        "--index-retry-backoff",
        type=float,
        default=_env_float("MORAG_INDEX_RETRY_BACKOFF", 5.0),
        help="base seconds between indexing attempts of a failing result (doubles each time)",
    )
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
        (args.index_max_attempts >= 1, "--index-max-attempts must be >= 1"),
        (args.index_retry_backoff >= 0, "--index-retry-backoff must be >= 0"),
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
        policy=QueuePolicy(
            lease_ttl_s=args.lease_ttl,
            max_attempts=args.max_attempts,
            backoff_base_s=args.retry_backoff,
        ),
        extra_task_types=extra,
        qdrant_url=args.qdrant_url,
        qdrant_path=args.qdrant_path,
        vector_path=args.vector_path,
        qdrant_api_key=args.qdrant_api_key,
        embedding_model=args.embedding_model,
        index_results=not args.no_index,
        index_max_attempts=args.index_max_attempts,
        index_retry_backoff_s=args.index_retry_backoff,
        auto_migrate=args.auto_migrate,
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
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
    import uvicorn

    from morag_worker.server.app import create_app
    from morag_worker.server.datadir import LayoutError
    from morag_worker.server.db import DatabaseUnavailable
    from morag_worker.server.migrate import SchemaError

    try:
        app = create_app(config)
    except (SchemaError, LayoutError, DatabaseUnavailable) as exc:
        print(f"morag-server: {exc}", file=sys.stderr)
        return 2
    # uvicorn re-raises the stop signal after its graceful shutdown; with this handler in
    # place that re-raise is a no-op and a SIGTERM'd server exits 0, as systemd expects.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _signum, _frame: None)
    uvicorn.run(
        app,
        host=config.host,
        port=config.port,
        log_level="warning",
        access_log=False,
        log_config=None,  # keep our loguru routing; uvicorn's own config would replace it
        timeout_graceful_shutdown=5,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
