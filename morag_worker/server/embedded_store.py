"""The embedded vector store: points in SQLite, one in-memory HNSW partition per user.

Layout of the directory (``<data_dir>/vectors`` by default)::

    points.sqlite3        every point: id, integer label, user, task, payload, vector
    graphs/<user>.hnsw    each user's HNSW graph as last saved (a cache of points.sqlite3)

SQLite is the record: an upsert is one transaction there, durable before it returns, so
nothing indexed is lost in a crash. The graphs are a cache rebuilt from it: at open, a
saved graph is loaded and reconciled with the table (labels deleted since are dropped,
labels added since go to the exact tail), and a builder thread moves tails into graphs
in small steps, leaving short tails alone while upserts go on (they get the CPU first).
Graphs are saved at close and every ``SAVE_INTERVAL_S`` while changed. WAL checkpoints
run on their own thread (:mod:`.embedded_checkpoint`), not inside upserts' commits.

Every user has its own partition, so a search touches only that user's vectors: the user
filter is the index itself, not a condition checked afterwards. Narrower filters (task,
source, type) select labels in SQLite; few are scored exactly, many through the graph
with a label filter. Concurrency: one lock guards the SQLite connection and the
partition map; each partition has its own lock (see :mod:`.hnsw_partition`).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from loguru import logger

from morag_worker.server.embedded_checkpoint import Checkpointer
from morag_worker.server.embedded_rows import (
    StoredPoint,
    check_meta,
    marks,
    next_label,
    open_points,
    open_reader,
    row_values,
    unit,
)
from morag_worker.server.hnsw_partition import HnswParams, Partition

__all__ = ["EmbeddedStore", "StoredPoint"]

#: Seconds between saves of changed graphs: a crash costs at most this much rebuilding.
SAVE_INTERVAL_S = 300.0
#: Builder's idle wait when no partition has a tail to move.
BUILD_IDLE_S = 0.5
#: The builder leaves a user's tail alone while points were written in the last this
#: many seconds, so upserts get the CPU (on 2 cores a builder at work halved their rate
#: at a million points): searches score tails exactly, so a graph may lag.
WRITE_QUIET_S = 0.5
#: ...up to this many points in a tail, which a search scores exactly in a few ms; a
#: longer tail is built even while writes go on, so searches stay fast in a bulk load.
DEFER_TAIL_MAX = 20000
#: Seconds between checkpoints of the points database's WAL by its own thread.
CHECKPOINT_INTERVAL_S = 0.5
#: A filter matching at most this many points is scored exactly from SQLite (about 10 ms);
#: a broader one searches the graph with a label filter.
EXACT_FILTER_MAX = 20000
_FILTER_COLUMNS = ("task_id", "source", "task_type")


class EmbeddedStore:
    """Vectors of every user under one directory; see the module docstring.

    ``dimension`` and ``model_id`` are recorded at creation; opening with another
    dimension or model raises ConfigError naming both.
    """

    def __init__(
        self,
        directory: Path,
        dimension: int,
        model_id: str | None,
        params: HnswParams | None = None,
    ) -> None:
        self.directory = directory
        self.dimension = dimension
        self.params = params or HnswParams()
        (directory / "graphs").mkdir(parents=True, exist_ok=True)
        self._db = open_points(directory / "points.sqlite3")
        self._lock = threading.RLock()
        check_meta(self._db, directory, dimension, model_id)
        # Searches read through their own connection, never waiting for an upsert's
        # transaction on the writer's (labels reach partitions only after their commit).
        self._reader = open_reader(directory / "points.sqlite3")
        self._read_lock = threading.Lock()
        self._next_label = next_label(self._db)
        self._partitions: dict[str, Partition] = {}
        self._dirty: set[str] = set()
        self._last_write = float("-inf")  # time.monotonic() of the last upsert or delete
        self._load_partitions()
        self._checkpointer = Checkpointer(directory / "points.sqlite3", CHECKPOINT_INTERVAL_S)
        self._stop = threading.Event()
        self._builder = threading.Thread(target=self._build_loop, name="hnsw-builder", daemon=True)
        self._builder.start()

    # ---- opening ---------------------------------------------------------------------

    def _graph_path(self, user_id: str) -> Path:
        name = hashlib.sha256(user_id.encode()).hexdigest()[:32]
        return self.directory / "graphs" / f"{name}.hnsw"

    def _load_partitions(self) -> None:
        users = [row[0] for row in self._db.execute("SELECT DISTINCT user_id FROM points")]
        for user_id in users:
            partition = self._partition(user_id)
            live = {
                row[0]
                for row in self._db.execute(
                    "SELECT label FROM points WHERE user_id = ?", (user_id,)
                )
            }
            path = self._graph_path(user_id)
            in_graph = partition.load(path, live) if path.exists() else set()
            missing = sorted(live - in_graph)
            for start in range(0, len(missing), 10000):
                part = missing[start : start + 10000]
                sql = f"SELECT label, vector FROM points WHERE label IN ({marks(part)})"
                rows = self._db.execute(sql, part).fetchall()
                self._add_rows(partition, rows)
            if missing:
                logger.info("vector store: {} points of a user wait for their graph", len(missing))

    def _add_rows(self, partition: Partition, rows: list[tuple[int, bytes]]) -> None:
        if not rows:
            return
        labels = np.asarray([row[0] for row in rows], dtype=np.int64)
        vectors = np.frombuffer(b"".join(row[1] for row in rows), dtype=np.float32)
        partition.add(labels, vectors.reshape(len(rows), self.dimension))

    def _partition(self, user_id: str) -> Partition:
        with self._lock:
            partition = self._partitions.get(user_id)
            if partition is None:
                partition = self._partitions[user_id] = Partition(self.dimension, self.params)
            return partition

    # ---- writing ---------------------------------------------------------------------

    def upsert(self, points: list[StoredPoint]) -> None:
        """Store points (replacing any with the same id), durably, searchable at once."""
        if not points:
            return
        points = list({p.point_id: p for p in points}.values())  # the last of a repeated id
        vectors = unit([p.vector for p in points], self.dimension)
        users = [p.payload["user_id"] for p in points]
        with self._lock:
            first = self._next_label
            self._db.execute("BEGIN IMMEDIATE")
            try:
                old = self._delete_ids([p.point_id for p in points], with_users=True)
                self._db.executemany(
                    "INSERT INTO points (label, point_id, user_id, task_id, source, task_type,"
                    " payload, vector) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        row_values(first + i, p, v)
                        for i, (p, v) in enumerate(zip(points, vectors, strict=True))
                    ),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._next_label = first + len(points)
            self._dirty.update(users)
            self._last_write = time.monotonic()
            # Under the lock, so that partitions see changes in the order of the commits
            # (a replaced label is never removed before it was added); cheap, since a
            # partition only notes them for its next search or build step.
            labels = np.arange(first, first + len(points), dtype=np.int64)
            owners = np.asarray(users)
            for user_id in set(users):
                partition = self._partition(user_id)
                partition.remove([label for label, owner in old if owner == user_id])
                rows = owners == user_id
                partition.add(labels[rows], vectors[rows])

    def _delete_ids(self, point_ids: list[str], with_users: bool = False) -> list[Any]:
        """Delete rows by point id; returns their labels (with their users if asked)."""
        returning = "label, user_id" if with_users else "label"
        sql = f"DELETE FROM points WHERE point_id IN ({marks(point_ids)}) RETURNING {returning}"
        rows = self._db.execute(sql, point_ids).fetchall()
        return [tuple(row) if with_users else row[0] for row in rows]

    def delete_task(self, user_id: str, task_id: str, keep: set[str] | None = None) -> int:
        """Delete the task's points except those whose ids are in ``keep``; returns how many."""
        with self._lock:
            rows = self._db.execute(
                "SELECT point_id FROM points WHERE user_id = ? AND task_id = ?", (user_id, task_id)
            ).fetchall()
            doomed = [row[0] for row in rows if not keep or row[0] not in keep]
            if not doomed:
                return 0
            labels = self._delete_ids(doomed)
            self._dirty.add(user_id)
            self._last_write = time.monotonic()
            self._partition(user_id).remove(labels)
        return len(labels)

    # ---- reading ---------------------------------------------------------------------

    def search(
        self, user_id: str, vector: list[float], limit: int, filters: dict[str, list[str]]
    ) -> list[tuple[float, dict[str, Any]]]:
        """``user_id``'s ``limit`` points nearest to ``vector``: (cosine, payload), best first."""
        query = unit([vector], self.dimension)[0]
        with self._lock:
            partition = self._partitions.get(user_id)
        if partition is None:
            return []
        if filters:
            labels = self._filtered_labels(user_id, filters)
            found = (
                self._exact(labels, query, limit)
                if len(labels) <= EXACT_FILTER_MAX
                else partition.search(query, limit, set(labels))
            )
        else:
            found = partition.search(query, limit)
        return self._with_payloads(found)

    def _filtered_labels(self, user_id: str, filters: dict[str, list[str]]) -> list[int]:
        sql = "SELECT label FROM points WHERE user_id = ?"
        args: list[str] = [user_id]
        for column in _FILTER_COLUMNS:
            if column in filters:
                sql += f" AND {column} IN ({marks(filters[column])})"
                args += filters[column]
        return [row[0] for row in self._read(sql, args)]

    def _exact(self, labels: list[int], query: np.ndarray, limit: int) -> list[tuple[int, float]]:
        if not labels:
            return []
        rows = self._read(
            f"SELECT label, vector FROM points WHERE label IN ({marks(labels)})", labels
        )
        matrix = np.frombuffer(b"".join(r[1] for r in rows), np.float32).reshape(-1, self.dimension)
        scores = matrix @ query
        top = np.argsort(-scores)[:limit]
        return [(rows[i][0], float(scores[i])) for i in top]

    def _with_payloads(self, found: list[tuple[int, float]]) -> list[tuple[float, dict[str, Any]]]:
        if not found:
            return []
        labels = [label for label, _ in found]
        sql = f"SELECT label, payload FROM points WHERE label IN ({marks(labels)})"
        rows = dict(self._read(sql, labels))
        # A point replaced or deleted since the graph answered has no row: it is skipped.
        return [(score, json.loads(rows[label])) for label, score in found if label in rows]

    def _read(self, sql: str, args: list[Any]) -> list[Any]:
        with self._read_lock:
            return self._reader.execute(sql, args).fetchall()

    def count(self, user_id: str) -> int:
        with self._lock:
            row = self._db.execute("SELECT count(*) FROM points WHERE user_id = ?", (user_id,))
            return int(row.fetchone()[0])

    def check_health(self) -> None:
        """Raise when the store's database cannot be read (closed, unreadable file)."""
        with self._lock:
            self._db.execute("SELECT count(*) FROM meta").fetchone()

    def describe(self) -> str:
        return f"embedded HNSW store at {self.directory}"

    def total(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM points").fetchone()[0])

    def unindexed(self) -> int:
        """Points not yet in a graph (in tails of partitions large enough for one)."""
        with self._lock:
            partitions = list(self._partitions.values())
        return sum(p.tail_size for p in partitions if len(p) >= self.params.min_points)

    def scroll(self, batch: int = 1000) -> Iterator[StoredPoint]:
        """Every point, in label order, read in batches (for export)."""
        after = 0
        while True:
            with self._lock:
                rows = self._db.execute(
                    "SELECT label, point_id, payload, vector FROM points WHERE label > ?"
                    " ORDER BY label LIMIT ?",
                    (after, batch),
                ).fetchall()
            if not rows:
                return
            for label, point_id, payload, vector in rows:
                after = label
                values = np.frombuffer(vector, dtype=np.float32).tolist()
                yield StoredPoint(point_id, values, json.loads(payload))

    # ---- graphs ----------------------------------------------------------------------

    def _build_loop(self) -> None:
        last_save = time.monotonic()
        while not self._stop.is_set():
            moved = 0
            with self._lock:
                partitions = list(self._partitions.values())
            for partition in partitions:
                if self._stop.is_set():
                    return
                writing = time.monotonic() - self._last_write < WRITE_QUIET_S
                if writing and partition.tail_size < DEFER_TAIL_MAX:
                    continue
                moved += partition.build_step()
            if time.monotonic() - last_save > SAVE_INTERVAL_S:
                self.save()
                last_save = time.monotonic()
            if not moved:
                self._stop.wait(BUILD_IDLE_S)

    def build_all(self) -> None:
        """Move every tail into its graph now (for tools and benchmarks; blocks)."""
        with self._lock:
            partitions = list(self._partitions.values())
        for partition in partitions:
            while partition.build_step():
                pass

    def save(self) -> None:
        """Write the graphs of changed users (a cache: losing them only costs rebuilding)."""
        with self._lock:
            dirty, self._dirty = self._dirty, set()
            partitions = {
                user: self._partitions[user] for user in dirty if user in self._partitions
            }
        for user_id, partition in partitions.items():
            partition.save(self._graph_path(user_id))

    def close(self) -> None:
        """Stop the builder, save the graphs, close the database; idempotent."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._builder.join(timeout=30)
        self._dirty.update(self._partitions)
        self.save()
        self._checkpointer.close()
        with self._read_lock:
            self._reader.close()
        with self._lock:
            self._db.close()
