"""PostgreSQL (a private instance to restart, or a schema on the shared one) and small
disks to fill; what a kind needs from this machine."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from chaoskit.common import PG_URL
from morag_worker.cli.local import free_port


class PrivatePostgres:
    """A PostgreSQL of our own (``initdb``/``pg_ctl`` in a temp dir, on a free port), to
    restart without disturbing anyone else's server on 5432."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="chaos-pg-"))
        self.root.chmod(0o755)
        self.data = self.root / "data"
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # initdb refuses to run as root
            self.as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.root, "postgres")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        # pg_ctl's postmaster inherits the output: a file, never a pipe we would wait on
        out = self.root / "pg_ctl.out"
        with out.open("w") as handle:
            done = subprocess.run(
                [*self.as_user, *args],
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                timeout=120,
                cwd=self.root,
            )
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {out.read_text()[-2000:]}")

    def start(self) -> None:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.root / "pg.log"),
            "-w",
            "start",
        )

    def pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def restart(self) -> None:
        log_file = str(self.root / "pg.log")
        self._run("pg_ctl", "-D", str(self.data), "-l", log_file, "-m", "fast", "-w", "restart")

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def pg_schema() -> Iterator[str]:
    """A fresh schema on the shared PostgreSQL (``MORAG_TEST_POSTGRES_URL``), dropped
    afterwards; yields its URL."""
    import psycopg

    admin = psycopg.connect(PG_URL, autocommit=True, connect_timeout=3)
    schema = "chaos_" + secrets.token_hex(6)
    admin.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()


# ---- small disks -------------------------------------------------------------------------


def can_mount() -> str:
    """'' when this process can mount a tmpfs, else why not."""
    if os.geteuid() != 0:
        return "needs root to mount a small tmpfs"
    return ""


@contextlib.contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"cannot mount a tmpfs at {path}: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path) -> None:
    """Write until the filesystem refuses: the disk is then really full."""
    with contextlib.suppress(OSError), path.open("wb", buffering=0) as handle:
        for block in (1 << 20, 1 << 12, 1 << 9, 1):
            with contextlib.suppress(OSError):
                while True:
                    handle.write(b"\0" * block)


def missing(needs: str) -> str:
    """Why this machine cannot run a kind that ``needs`` something, or ''."""
    if needs == "root":
        return can_mount()
    if needs == "initdb" and not (shutil.which("initdb") and shutil.which("pg_ctl")):
        return "initdb/pg_ctl not found"
    if needs == "postgres":
        try:
            import psycopg

            psycopg.connect(PG_URL, connect_timeout=3).close()
        except Exception as exc:
            return f"PostgreSQL not reachable at {PG_URL}: {str(exc).strip()[:100]}"
    return ""
