"""The embedded store's table: schema, format check, row encoding (see .embedded_store).

``points.sqlite3`` holds one row per point: an integer ``label`` (the point's name in its
user's HNSW graph, never reused), the point id, the columns filters select on, the
payload as JSON and the unit vector as little-endian float32 bytes. ``meta`` records the
format, the dimension and the embedding model the store was built with.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

from morag_worker.errors import ConfigError

#: Format of points.sqlite3; a reader refuses a newer one.
FORMAT_VERSION = 1
#: WAL pages at which the writer checkpoints itself (see open_points). By then the
#: checkpoint thread has copied all but the last moments of it; the writer copies the
#: rest and so lets the WAL start over (which a passive checkpoint cannot while upserts
#: keep appending). 128 MiB at 16 KiB pages.
WAL_CHECKPOINT_PAGES = 8000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS points (
    label INTEGER PRIMARY KEY AUTOINCREMENT,
    point_id TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    source TEXT,
    task_type TEXT,
    payload TEXT NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS points_user_task ON points (user_id, task_id);
"""


@dataclass(frozen=True)
class StoredPoint:
    """A point as stored: its id, unit vector and payload (``user_id``, ``task_id`` …)."""

    point_id: str
    vector: list[float]
    payload: dict[str, Any]


def marks(values: list[Any]) -> str:
    """``?, ?, …`` for an ``IN (…)`` of these values."""
    return ",".join("?" * len(values))


def row_values(label: int, point: StoredPoint, vector: np.ndarray) -> tuple[Any, ...]:
    payload = point.payload
    return (
        label,
        point.point_id,
        payload["user_id"],
        payload["task_id"],
        payload.get("source"),
        payload.get("task_type"),
        json.dumps(payload, separators=(",", ":")),
        vector.astype(np.float32).tobytes(),
    )


def unit(vectors: Sequence[Sequence[float]], dimension: int) -> np.ndarray:
    """The vectors as float32 rows of length 1 (a zero vector stays zero); ValueError for
    a vector of another length than ``dimension``."""
    for vector in vectors:
        if len(vector) != dimension:
            raise ValueError(
                f"a vector of {len(vector)} numbers; this store holds dimension {dimension}"
            )
    if vectors and isinstance(vectors[0], np.ndarray):
        matrix = np.asarray(vectors, dtype=np.float32).reshape(-1, dimension)
    else:
        # Lists of floats (as decoded from JSON): one flat pass costs about 40 % less CPU
        # than np.asarray's walk over nested sequences (9 against 14 us per 384 numbers).
        flat = chain.from_iterable(vectors)
        count = len(vectors) * dimension
        matrix = np.fromiter(flat, dtype=np.float32, count=count).reshape(-1, dimension)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1.0, norms)


def open_points(path: Path) -> sqlite3.Connection:
    """Open (creating) the points database, shared by threads under the store's lock."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    # Rows are ~3 kB (a 384-dim vector and a chunk's text): 16 KiB pages hold several
    # without overflow pages (upserts ran ~20 % faster than with 4 KiB pages).
    db.execute("PRAGMA page_size=16384")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    # 64 MiB of page cache keeps the point-id index (random UUIDs, ~50 MB at a million
    # points) in memory, so an upsert does not read it back from disk.
    db.execute("PRAGMA cache_size=-65536")
    # Checkpoints run on their own thread (.embedded_checkpoint); the writer checkpoints
    # only when the WAL passes this many pages (128 MiB).
    db.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
    db.executescript(_SCHEMA)
    return db


def open_reader(path: Path) -> sqlite3.Connection:
    """A second, read-only connection for searches: in WAL mode it reads the last commit
    while an upsert's transaction is open on the writer, instead of waiting for it."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA query_only=1")
    return db


def check_meta(db: sqlite3.Connection, directory: Path, dimension: int, model: str | None) -> None:
    """Record the dimension and model of a new store; refuse another one's (ConfigError)."""
    meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    if not meta:
        rows = [("format", str(FORMAT_VERSION)), ("dimension", str(dimension))]
        rows += [("embedding_model", model)] if model else []
        db.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", rows)
        return
    if int(meta.get("format", 0)) > FORMAT_VERSION:
        raise ConfigError(
            f"{directory} was written by a newer morag-server (format {meta['format']}); "
            "run that release"
        )
    if int(meta["dimension"]) != dimension:
        raise ConfigError(
            f"the vector store {directory} holds vectors of dimension {meta['dimension']}, "
            f"but the embedding model {model} makes {dimension}: configure the model it "
            "was built with, or another path"
        )
    stored = meta.get("embedding_model")
    if stored and model and stored != model:
        raise ConfigError(
            f"the vector store {directory} was built with the embedding model {stored}, not "
            f"{model}: its vectors are not comparable; configure that model, or another path"
        )


def next_label(db: sqlite3.Connection) -> int:
    """The next free label. Labels are never reused (a saved graph may still hold a
    deleted one), so it is past the largest ever given, which AUTOINCREMENT records."""
    seq = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'points'").fetchone()
    top = db.execute("SELECT max(label) FROM points").fetchone()[0]
    return int(max(seq[0] if seq else 0, top or 0)) + 1
