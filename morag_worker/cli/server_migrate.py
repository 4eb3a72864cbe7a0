"""``morag-server migrate [--check]``: schema and data-dir migrations without serving."""

from __future__ import annotations

import sys
from pathlib import Path

from morag_worker.server.datadir import LayoutError, pending_steps, read_layout
from morag_worker.server.db import Database, DatabaseUnavailable
from morag_worker.server.migrate import Migrator, SchemaError
from morag_worker.server.state import ServerConfig, build_state


def _report(config: ServerConfig) -> int:
    url = config.resolved_database_url()
    if not url.startswith(("postgresql://", "postgres://")):
        path = url.removeprefix("sqlite:///")
        if not Path(path).exists():  # a check must not create the database
            print(f"database: none yet at {path}; every migration is pending")
            return 1
    db = Database(url)
    try:
        status = Migrator(db).status()
    finally:
        db.close()
    print(f"database: {status.describe()} (this server knows up to {status.target})")
    layout = read_layout(config.data_dir)["version"] if config.data_dir.exists() else 0
    steps = pending_steps(config.data_dir) if config.data_dir.exists() else ["all"]
    print(f"data dir {config.data_dir}: layout {layout}, {len(steps)} step(s) pending")
    if status.too_new:
        return 2
    return 1 if status.pending or steps else 0


def run_migrate(config: ServerConfig, check: bool) -> int:
    """Exit status: 0 current (or migrated), 1 pending (``--check``), 2 unusable."""
    try:
        if check:
            return _report(config)
        st = build_state(config)  # migrates both, printing each step as it is applied
        st.db.close()
    except (SchemaError, LayoutError, DatabaseUnavailable) as exc:
        print(f"morag-server migrate: {exc}", file=sys.stderr)
        return 2
    return _report(config)
