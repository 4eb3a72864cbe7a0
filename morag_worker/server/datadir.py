"""The data dir's own layout version: what lives beside the database moves with it.

The data dir holds the file store (``files/<aa>/<sha256>``) and, in the embedded default,
the vector store. Its layout is versioned in ``layout.json`` the way the schema is in
``schema_migrations``: numbered steps, each recorded once it is complete, applied by one
process at a time (an exclusive ``flock`` on ``layout.lock``, which also serialises
replicas sharing the directory over a network file system that supports locks). Step 1
is the layout release 0.1.0 wrote; a data dir without ``layout.json`` is adopted as that.

A step that moves data must be restartable: it runs again from the start if the process
dies before ``layout.json`` records it, so it may only copy, never destroy, until its last
action.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from morag_worker import __version__

LAYOUT_FILE = "layout.json"
LOCK_FILE = "layout.lock"
#: The data dir holds the database, key hashes, uploads and admin.key: owner only.
DATA_DIR_MODE = 0o700


@dataclass(frozen=True)
class DataContext:
    """What a step may use: the directory, the server's objects, a progress callback."""

    data_dir: Path
    state: Any
    progress: Callable[[str], None]


@dataclass(frozen=True)
class DataStep:
    version: int
    name: str
    apply: Callable[[DataContext], None]


def _adopt_release_layout(_: DataContext) -> None:
    """Release 0.1.0's layout: ``files/<aa>/<sha256>``, ``files/tmp``, ``qdrant/``.

    Nothing to move: this step only records that the directory is in that layout.
    """


def _embedded_vectors(ctx: DataContext) -> None:
    """Vectors move from Qdrant local mode to the embedded HNSW store."""
    from morag_worker.server.vector_migration import layout_step

    layout_step(ctx)


#: Every layout step this code knows, in order (more are appended, never renumbered).
STEPS: list[DataStep] = [
    DataStep(1, "files by sha256 prefix", _adopt_release_layout),
    DataStep(2, "vectors from Qdrant local mode to the embedded store", _embedded_vectors),
]


class LayoutError(Exception):
    """The data dir's layout is newer than this code, or its record is unreadable."""


def make_private(data_dir: Path) -> None:
    """Create the data dir owner-only, or close one that an older release (or a
    permissive umask) left open to others."""
    try:
        data_dir.mkdir(mode=DATA_DIR_MODE, parents=True, exist_ok=True)
        os.chmod(data_dir, DATA_DIR_MODE)
    except OSError as exc:
        raise LayoutError(
            f"cannot make the data dir {data_dir} private (mode 0700): {exc.strerror}; "
            "run the server as the directory's owner"
        ) from None


def read_layout(data_dir: Path) -> dict[str, Any]:
    path = data_dir / LAYOUT_FILE
    if not path.exists():
        return {"version": 0, "steps": []}
    try:
        layout: dict[str, Any] = json.loads(path.read_text())
        int(layout["version"])
    except (ValueError, KeyError, TypeError) as exc:
        raise LayoutError(
            f"{path} is not a layout record ({exc}); restore it from a backup"
        ) from None
    return layout


def _write_layout(data_dir: Path, layout: dict[str, Any]) -> None:
    path = data_dir / LAYOUT_FILE
    temp = path.with_suffix(".tmp")
    temp.write_text(json.dumps(layout, indent=2) + "\n")
    os.replace(temp, path)  # a reader sees the old record or the new one, never half


@contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    with (data_dir / LOCK_FILE).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def pending_steps(data_dir: Path, steps: list[DataStep] | None = None) -> list[DataStep]:
    steps = STEPS if steps is None else steps
    current = int(read_layout(data_dir)["version"])
    known = steps[-1].version if steps else 0
    if current > known:
        raise LayoutError(
            f"the data dir {data_dir} is at layout version {current}, but this morag-server "
            f"{__version__} knows versions up to {known}: run the newer morag-server"
        )
    return [step for step in steps if step.version > current]


def migrate_data_dir(
    data_dir: Path,
    state: Any,
    progress: Callable[[str], None] = lambda _: None,
    steps: list[DataStep] | None = None,
) -> list[DataStep]:
    """Apply the pending layout steps in order; returns those applied."""
    data_dir.mkdir(parents=True, exist_ok=True)
    applied = []
    with _locked(data_dir):
        for step in pending_steps(data_dir, steps):  # read again under the lock
            step.apply(DataContext(data_dir, state, progress))
            layout = read_layout(data_dir)
            layout["version"] = step.version
            layout.setdefault("steps", []).append(
                {
                    "version": step.version,
                    "name": step.name,
                    "applied_at": time.time(),
                    "server_version": __version__,
                }
            )
            _write_layout(data_dir, layout)
            progress(f"data dir layout step {step.version} ({step.name}) done")
            applied.append(step)
    return applied
