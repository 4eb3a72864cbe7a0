"""morag-server: the coordinator (API keys, task queue, files, results, search)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from morag_worker.cli.args import Parser, add_version
from morag_worker.server.queue import QueuePolicy
from morag_worker.server.state import ServerConfig

#: (flag, environment variable, default, help) for every option but the switches.
_OPTIONS: list[tuple[str, str, str, str]] = [
    ("--host", "MORAG_SERVER_HOST", "127.0.0.1", "address to listen on (0.0.0.0: every interface)"),
    ("--port", "MORAG_SERVER_PORT", "8000", "port to listen on"),
    (
        "--data-dir",
        "MORAG_DATA_DIR",
        "./morag-data",
        "database, files, vectors and admin.key live here",
    ),
    (
        "--database-url",
        "MORAG_DATABASE_URL",
        "",
        "postgresql://USER@HOST/DB for PostgreSQL (several replicas); default SQLite in the "
        "data dir",
    ),
    (
        "--database-url-file",
        "MORAG_DATABASE_URL_FILE",
        "",
        "file holding the database URL, which keeps its password out of the environment; "
        "--database-url wins",
    ),
    ("--max-upload-bytes", "MORAG_MAX_UPLOAD_BYTES", str(2 << 30), "largest upload, in bytes"),
    ("--lease-ttl", "MORAG_LEASE_TTL", "30", "seconds a lease lasts without a heartbeat"),
    ("--max-attempts", "MORAG_MAX_ATTEMPTS", "3", "attempts before a task is dead"),
    (
        "--retry-backoff",
        "MORAG_RETRY_BACKOFF",
        "2",
        "base seconds of the exponential retry backoff",
    ),
    (
        "--max-wait",
        "MORAG_MAX_WAIT",
        "30",
        "longest a lease long-poll waits, seconds (at most 300)",
    ),
    (
        "--extra-task-types",
        "MORAG_EXTRA_TASK_TYPES",
        "",
        "comma-separated task types served by worker plugins",
    ),
    (
        "--qdrant-url",
        "MORAG_QDRANT_URL",
        "",
        "Qdrant server or cluster URL; default: the embedded store, in the data dir",
    ),
    (
        "--vector-path",
        "MORAG_VECTOR_PATH",
        "",
        "directory of the embedded vector store (default <data-dir>/vectors); unused with "
        "--qdrant-url",
    ),
    (
        "--qdrant-path",
        "MORAG_QDRANT_PATH",
        "",
        "Qdrant local-mode data of releases up to 0.1.x, moved into the embedded store at "
        "start (default <data-dir>/qdrant)",
    ),
    ("--qdrant-api-key", "MORAG_QDRANT_API_KEY", "", "API key of the Qdrant server"),
    (
        "--qdrant-api-key-file",
        "MORAG_QDRANT_API_KEY_FILE",
        "",
        "file holding the Qdrant API key; --qdrant-api-key wins",
    ),
    (
        "--embedding-model",
        "MORAG_EMBEDDING_MODEL",
        "all-MiniLM-L6-v2",
        "model that embeds chunks and queries: a local directory or a name 'morag models "
        "list' shows (embedding:NAME)",
    ),
    (
        "--index-max-attempts",
        "MORAG_INDEX_MAX_ATTEMPTS",
        "5",
        "failed attempts before a result is marked failed for indexing",
    ),
    (
        "--index-retry-backoff",
        "MORAG_INDEX_RETRY_BACKOFF",
        "5",
        "base seconds between indexing attempts of a failing result (doubles each time)",
    ),
    ("--log-level", "LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING or ERROR"),
]
_TYPES: dict[str, type] = {
    "--port": int,
    "--max-upload-bytes": int,
    "--max-attempts": int,
    "--lease-ttl": float,
    "--retry-backoff": float,
    "--max-wait": float,
    "--index-max-attempts": int,
    "--index-retry-backoff": float,
}


def _typed(flag: str, env_name: str, raw: str) -> object:
    kind = _TYPES.get(flag, str)
    try:
        return kind(raw)
    except ValueError:
        word = "an integer" if kind is int else "a number"
        raise SystemExit(f"morag-server: {env_name}: expected {word}, got {raw!r}") from None


def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    p = Parser(
        prog="morag-server",
        description="morag-server: the coordinator: API keys, the task queue, files, "
        "results and search. Flags win over environment variables.",
        epilog="`morag-server migrate [--check]` applies or reports schema and data-dir "
        "migrations without serving.",
    )
    add_version(p)
    for flag, env_name, default, help_text in _OPTIONS:
        raw = env(env_name) or default
        p.add_argument(
            flag,
            type=_TYPES.get(flag, str),
            default=_typed(flag, env_name, raw),
            help=f"{help_text} [{env_name}; default {default or 'none'}]",
        )
    p.add_argument(
        "--no-index",
        action="store_true",
        default=env("MORAG_NO_INDEX", "").lower() in ("1", "true", "yes", "on"),
        help="store results without indexing them for search [MORAG_NO_INDEX]",
    )
    p.add_argument(
        "--no-auto-migrate",
        dest="auto_migrate",
        action="store_false",
        default=_env_bool("MORAG_AUTO_MIGRATE", True),
        help="do not migrate the schema and data dir at start; refuse to start unless they "
        "are current (run `morag-server migrate` first) [MORAG_AUTO_MIGRATE=false]",
    )
    p.add_argument(
        "--log-format",
        default=env("MORAG_LOG_FORMAT", "auto"),
        choices=["auto", "json", "text"],
        help="auto: text on a terminal, JSON lines otherwise [MORAG_LOG_FORMAT; default auto]",
    )
    return p


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SystemExit(f"morag-server: {name}: expected true or false, got {raw!r}")


def _secret(value: str, path: str, flag: str) -> str:
    """``value``, else the content of the file at ``path`` (Docker and Kubernetes secrets)."""
    if value or not path:
        return value
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise SystemExit(f"morag-server: {flag}: cannot read {path}: {exc.strerror}") from None


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
        database_url=_secret(args.database_url, args.database_url_file, "--database-url-file"),
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
        qdrant_api_key=_secret(
            args.qdrant_api_key, args.qdrant_api_key_file, "--qdrant-api-key-file"
        ),
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
