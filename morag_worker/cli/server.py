"""morag-server: the coordinator (API keys, task queue, files, results, search)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import NoReturn

from morag_worker.argparsing import Parser, add_version
from morag_worker.options import Option, add_options, merged_environment, parse_bool, value
from morag_worker.server.db import SQLITE_SYNC_MODES
from morag_worker.server.limits import RequestLimits
from morag_worker.server.queue import QueuePolicy
from morag_worker.server.state import ServerConfig

#: Files the server creates (database, uploads, vector store) are owner-only.
SERVER_UMASK = 0o077
_LIMITS = RequestLimits()

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
    ("--max-upload-bytes", "MORAG_MAX_UPLOAD_BYTES", str(2 << 30), "largest uploaded file, bytes"),
    (
        "--max-body-bytes",
        "MORAG_MAX_BODY_BYTES",
        str(_LIMITS.max_body_bytes),
        "largest JSON body (and multipart text field), results excepted, bytes",
    ),
    (
        "--max-result-bytes",
        "MORAG_MAX_RESULT_BYTES",
        str(_LIMITS.max_result_bytes),
        "largest result call, single or batched, bytes",
    ),
    (
        "--body-timeout",
        "MORAG_BODY_TIMEOUT",
        f"{_LIMITS.body_timeout_s:g}",
        "seconds a request body may send nothing before it is refused (408)",
    ),
    (
        "--min-body-rate",
        "MORAG_MIN_BODY_RATE",
        f"{_LIMITS.min_body_rate:g}",
        "bytes/s a request body must average after --body-timeout seconds (408)",
    ),
    (
        "--max-long-polls-per-key",
        "MORAG_MAX_LONG_POLLS_PER_KEY",
        str(_LIMITS.max_long_polls_per_key),
        "lease long-polls one key may have waiting at once (429 beyond)",
    ),
    (
        "--file-grace",
        "MORAG_FILE_GRACE",
        "3600",
        "seconds before the sweep removes a stored file no task refers to, or an "
        "abandoned partial upload",
    ),
    (
        "--min-free-disk-bytes",
        "MORAG_MIN_FREE_DISK_BYTES",
        str(256 << 20),
        "/health says degraded below this much free space in the data dir, bytes",
    ),
    (
        "--sqlite-synchronous",
        "MORAG_SQLITE_SYNCHRONOUS",
        "full",
        "full: every acknowledged write survives a power loss; normal: faster, survives a "
        "crash of the server but may lose the last writes on a power loss (docs/operations.md)",
    ),
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
    "--max-body-bytes": int,
    "--max-result-bytes": int,
    "--body-timeout": float,
    "--min-body-rate": float,
    "--max-long-polls-per-key": int,
    "--file-grace": float,
    "--min-free-disk-bytes": int,
    "--max-attempts": int,
    "--lease-ttl": float,
    "--retry-backoff": float,
    "--max-wait": float,
    "--index-max-attempts": int,
    "--index-retry-backoff": float,
}


def _fail(message: str) -> NoReturn:
    """Bad configuration: one line naming the setting, exit status 2 (as a flag typo)."""
    print(f"morag-server: {message}", file=sys.stderr)
    raise SystemExit(2)


def _options() -> list[Option]:
    table = [
        Option(flag, (env_name,), default, help_text, _TYPES.get(flag, str))
        for flag, env_name, default, help_text in _OPTIONS
    ]
    return [
        *table,
        Option(
            "--no-index",
            ("MORAG_NO_INDEX",),
            "false",
            "store results without indexing them for search",
            bool,
        ),
        Option(
            "--no-auto-migrate",
            (),
            "false",
            "do not migrate the schema and data dir at "
            "start; refuse to start unless they are current (run `morag-server migrate` "
            "first) [MORAG_AUTO_MIGRATE=false]",
            bool,
        ),
        Option(
            "--log-format",
            ("MORAG_LOG_FORMAT",),
            "auto",
            "auto (text on a terminal, JSON lines otherwise), json or text",
        ),
    ]


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="morag-server",
        description="morag-server: the coordinator: API keys, the task queue, files, "
        "results and search. Flags win over environment variables, which win over the "
        "--env-file.",
        epilog="`morag-server migrate [--check]` applies or reports schema and data-dir "
        "migrations without serving.",
    )
    add_version(p)
    add_options(p, _options())
    p.add_argument(
        "--env-file",
        default=os.environ.get("MORAG_ENV_FILE", ".env"),
        help="dotenv file read under the environment [MORAG_ENV_FILE; default .env]",
    )
    return p


def _resolve(args: argparse.Namespace) -> argparse.Namespace:
    """Every option's value (flag > environment > --env-file > default), typed; a bad
    one stops with one line naming it."""
    env = merged_environment(args.env_file, os.environ)
    try:
        values = {o.name: value(args, env, o) for o in _options()}
        auto = parse_bool(env.get("MORAG_AUTO_MIGRATE", "true"), "MORAG_AUTO_MIGRATE")
    except ValueError as exc:
        _fail(str(exc))
    resolved = argparse.Namespace(**{**vars(args), **values})
    resolved.auto_migrate = auto and not values["no_auto_migrate"]
    resolved.resolved = True
    if resolved.log_format not in ("auto", "json", "text"):
        _fail(f"--log-format: expected auto, json or text, got {resolved.log_format!r}")
    return resolved


def _secret(value: str, path: str, flag: str) -> str:
    """``value``, else the content of the file at ``path`` (Docker and Kubernetes secrets)."""
    if value or not path:
        return value
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        _fail(f"{flag}: cannot read {path}: {exc.strerror}")


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    """The server's configuration from parsed flags (resolved here, see :func:`_resolve`)."""
    if not getattr(args, "resolved", False):
        args = _resolve(args)
    checks = [
        (args.lease_ttl > 0, "--lease-ttl must be > 0"),
        (args.max_attempts >= 1, "--max-attempts must be >= 1"),
        (args.max_upload_bytes > 0, "--max-upload-bytes must be > 0"),
        (0 < args.max_wait <= 300, "--max-wait must be in (0, 300]"),
        (args.retry_backoff >= 0, "--retry-backoff must be >= 0"),
        (args.index_max_attempts >= 1, "--index-max-attempts must be >= 1"),
        (args.index_retry_backoff >= 0, "--index-retry-backoff must be >= 0"),
        (args.max_body_bytes >= 1024, "--max-body-bytes must be >= 1024"),
        (args.max_result_bytes >= 1024, "--max-result-bytes must be >= 1024"),
        (args.body_timeout > 0, "--body-timeout must be > 0"),
        (args.min_body_rate > 0, "--min-body-rate must be > 0"),
        (args.max_long_polls_per_key >= 1, "--max-long-polls-per-key must be >= 1"),
        (args.file_grace >= 1, "--file-grace must be >= 1 (seconds)"),
        (args.min_free_disk_bytes >= 0, "--min-free-disk-bytes must be >= 0"),
        (
            args.sqlite_synchronous.lower() in SQLITE_SYNC_MODES,
            f"--sqlite-synchronous (MORAG_SQLITE_SYNCHRONOUS) must be one of {SQLITE_SYNC_MODES}",
        ),
    ]
    for ok, message in checks:
        if not ok:
            _fail(message)
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
        limits=RequestLimits(
            max_body_bytes=args.max_body_bytes,
            max_result_bytes=args.max_result_bytes,
            body_timeout_s=args.body_timeout,
            min_body_rate=args.min_body_rate,
            max_long_polls_per_key=args.max_long_polls_per_key,
        ),
        file_grace_s=args.file_grace,
        min_free_disk_bytes=args.min_free_disk_bytes,
        sqlite_synchronous=args.sqlite_synchronous.lower(),
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
        args = _resolve(parser.parse_args(argv[1:]))
        config = config_from_args(args)
        from morag_worker.observability.logging import setup_logging

        setup_logging(args.log_level, "text", component="server")
        return run_migrate(config, check=args.check)
    args = _resolve(build_parser().parse_args(argv))
    config = config_from_args(args)
    from morag_worker.observability.logging import setup_logging

    setup_logging(args.log_level, args.log_format, component="server")
    from morag_worker.cli.server_serve import serve

    return serve(config)


if __name__ == "__main__":
    sys.exit(main())
