"""One user's vectors in memory: an HNSW graph for most of them, an exact tail for the rest.

New vectors land in the *tail*, which every search scores exactly (a matrix product), so
a point is searchable the moment it is stored. A builder moves tail points into the HNSW
graph a few hundred at a time (:meth:`Partition.build_step`); a partition smaller than
``hnsw_min_points`` never gets a graph at all, since scoring a few thousand vectors
exactly is as fast as walking a graph and always finds the true nearest.

Writers never wait for the builder: :meth:`Partition.add` and :meth:`Partition.remove`
only note their change in an *inbox* under a lock of its own, held for a copy of the
rows. Whoever next takes the partition's lock (a search, a build step) first applies the
inbox to the tail and the graph, so a search still sees every change made before it
began. A search waits at most one build step for that lock. Labels are the store's
integer point labels; a label is never reused, so a removed label can stay marked
deleted in the graph (``replace_deleted`` reuses its slot for a new one).
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from pathlib import Path

import hnswlib
import numpy as np


@dataclass(frozen=True)
class HnswParams:
    #: Graph degree 16 and construction beam 100: recall@10 above 0.99 on 384-dim vectors
    #: shaped like text embeddings, at about 1 ms per point on one core (bench/search.py).
    m: int = 16
    ef_construction: int = 100
    #: Search beam: at least the number of results asked for; 64 gave recall@10 1.000 at
    #: a million points (100 users) with searches of 0.3 ms (bench/search.py).
    ef_search: int = 64
    #: Below this many points a user is searched exactly (no graph): a few thousand dot
    #: products cost less than a graph walk and are always exact.
    min_points: int = 5000
    #: Points moved into the graph per locked step: about a tenth of a second of work,
    #: the longest a search of this user waits for the builder.
    build_step: int = 200
    #: Threads hnswlib uses to insert; one leaves the other cores to requests.
    build_threads: int = 1


class _Tail:
    """Vectors not yet in the graph, in arrays that grow by doubling: appending and
    taking from the end cost only the rows moved (the builder takes the newest first;
    the order in which points enter the graph does not matter)."""

    def __init__(self, dimension: int) -> None:
        self.size = 0
        self._labels = np.zeros(0, dtype=np.int64)
        self._vectors = np.zeros((0, dimension), dtype=np.float32)

    def view(self) -> tuple[np.ndarray, np.ndarray]:
        return self._labels[: self.size], self._vectors[: self.size]

    def append(self, labels: np.ndarray, vectors: np.ndarray) -> None:
        needed = self.size + len(labels)
        if needed > len(self._labels):
            capacity = max(needed, 2 * len(self._labels), 256)
            grown = np.zeros((capacity, self._vectors.shape[1]), dtype=np.float32)
            grown[: self.size] = self._vectors[: self.size]
            self._vectors = grown
            self._labels = np.resize(self._labels, capacity)
        self._labels[self.size : needed] = labels
        self._vectors[self.size : needed] = vectors
        self.size = needed

    def take(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        """Remove and return (copies of) the last ``count`` rows."""
        start = self.size - count
        taken = self._labels[start : self.size].copy(), self._vectors[start : self.size].copy()
        self._shrink_to(start)
        return taken

    def clear(self) -> None:
        self._shrink_to(0)

    def _shrink_to(self, size: int) -> None:
        self.size = size
        if self.size < len(self._labels) // 4:
            # A drained tail gives its memory back (a bulk load leaves it large).
            capacity = max(2 * self.size, 256)
            self._labels = self._labels[:capacity].copy()
            self._vectors = self._vectors[:capacity].copy()

    def remove(self, labels: np.ndarray) -> None:
        current, vectors = self.view()
        keep = ~np.isin(current, labels)
        kept = int(keep.sum())
        if kept == self.size:
            return
        self._labels[:kept] = current[keep]
        self._vectors[:kept] = vectors[keep]
        self.size = kept


class Partition:
    """The vectors of one user. Thread-safe."""

    def __init__(self, dimension: int, params: HnswParams) -> None:
        self.dimension = dimension
        self.params = params
        self.lock = threading.Lock()
        self.graph: hnswlib.Index | None = None
        #: Labels in the graph and not deleted.
        self.in_graph: set[int] = set()
        self._tail = _Tail(dimension)
        #: Changes not yet applied to tail and graph. Lock order: ``lock`` before
        #: ``_inbox_lock``, and nobody holding ``_inbox_lock`` waits for ``lock``.
        self._inbox_lock = threading.Lock()
        self._inbox = _Tail(dimension)
        self._removed: list[int] = []

    # ---- size ----------------------------------------------------------------------------

    def __len__(self) -> int:
        with self.lock:
            self._apply_inbox()
            return len(self.in_graph) + self._tail.size

    @property
    def tail_size(self) -> int:
        """Points not in the graph (an estimate while changes wait in the inbox)."""
        return self._tail.size + self._inbox.size

    # ---- writing -------------------------------------------------------------------------

    def add(self, labels: np.ndarray, vectors: np.ndarray) -> None:
        """Append unit vectors under new labels (searchable by the next search, exactly)."""
        with self._inbox_lock:
            self._inbox.append(labels, vectors)

    def remove(self, labels: list[int]) -> None:
        """Forget these labels wherever they are (unknown labels are ignored).

        Calls of ``add`` and ``remove`` apply in the order they are made: the store makes
        them under its own lock, in the order of its commits."""
        if not labels:
            return
        with self._inbox_lock:
            self._inbox.remove(np.asarray(labels, dtype=np.int64))
            self._removed.extend(labels)

    def _apply_inbox(self) -> None:
        """Move waiting changes into tail and graph; called with ``lock`` held."""
        with self._inbox_lock:
            if self._inbox.size:
                self._tail.append(*self._inbox.view())
                self._inbox.clear()
            removed, self._removed = self._removed, []
        if not removed:
            return
        # Labels still in the inbox were dropped there; these are in tail or graph (or
        # nowhere, when a replaced point's label was never added: ignored).
        for label in removed:
            if label in self.in_graph:
                assert self.graph is not None
                self.graph.mark_deleted(label)
                self.in_graph.discard(label)
        self._tail.remove(np.asarray(removed, dtype=np.int64))

    def build_step(self) -> int:
        """Move up to ``params.build_step`` tail points into the graph; returns how many."""
        with self.lock:
            self._apply_inbox()
            total = len(self.in_graph) + self._tail.size
            if not self._tail.size or total < self.params.min_points:
                return 0
            graph = self._graph_with_room(self.params.build_step)
            labels, vectors = self._tail.take(min(self.params.build_step, self._tail.size))
            graph.add_items(
                vectors, labels, num_threads=self.params.build_threads, replace_deleted=True
            )
            self.in_graph.update(int(label) for label in labels)
            return len(labels)

    def _graph_with_room(self, extra: int) -> hnswlib.Index:
        # Called with the lock held.
        if self.graph is None:
            self.graph = hnswlib.Index(space="cosine", dim=self.dimension)
            self.graph.init_index(
                max_elements=max(self.params.min_points, extra) * 2,
                M=self.params.m,
                ef_construction=self.params.ef_construction,
                allow_replace_deleted=True,
            )
        deleted = self.graph.element_count - len(self.in_graph)
        needed = self.graph.element_count - deleted + extra
        if needed > self.graph.get_max_elements():
            # Doubling keeps the number of (copying) resizes logarithmic in the size.
            self.graph.resize_index(max(needed, 2 * self.graph.get_max_elements()))
        return self.graph

    # ---- reading -------------------------------------------------------------------------

    def search(
        self, query: np.ndarray, limit: int, allowed: set[int] | None = None
    ) -> list[tuple[int, float]]:
        """The ``limit`` nearest labels with their cosine similarity, best first.

        ``allowed`` restricts the result to those labels (a filter on the payload).
        """
        with self.lock:
            self._apply_inbox()
            found = self._search_tail(query, limit, allowed)
            if self.in_graph:
                found += self._search_graph(query, limit, allowed)
        found.sort(key=lambda pair: -pair[1])
        return found[:limit]

    def _search_tail(
        self, query: np.ndarray, limit: int, allowed: set[int] | None
    ) -> list[tuple[int, float]]:
        labels, vectors = self._tail.view()
        if allowed is not None and len(labels):
            mask = np.fromiter((int(label) in allowed for label in labels), bool, len(labels))
            labels, vectors = labels[mask], vectors[mask]
        if not len(labels):
            return []
        scores = vectors @ query
        top = np.argsort(-scores)[:limit] if len(scores) > limit else np.argsort(-scores)
        return [(int(labels[i]), float(scores[i])) for i in top]

    def _search_graph(
        self, query: np.ndarray, limit: int, allowed: set[int] | None
    ) -> list[tuple[int, float]]:
        assert self.graph is not None
        count = min(limit, len(self.in_graph) if allowed is None else len(allowed))
        self.graph.set_ef(max(self.params.ef_search, count))
        keep = None if allowed is None else (lambda label: label in allowed)
        while count > 0:
            try:
                labels, distances = self.graph.knn_query(query, k=count, filter=keep)
            except RuntimeError:
                # hnswlib refuses when fewer than k matches are reachable (a narrow
                # filter): ask for fewer.
                count //= 2
                continue
            return [
                (int(label), 1.0 - float(distance))
                for label, distance in zip(labels[0], distances[0], strict=True)
            ]
        return []

    # ---- persistence ---------------------------------------------------------------------

    def save(self, path: Path) -> bool:
        """Write the graph to ``path`` (atomically); False when there is none."""
        with self.lock:
            if self.graph is None:
                return False
            temp = path.with_suffix(".tmp")
            self.graph.save_index(str(temp))
            temp.replace(path)
            return True

    def load(self, path: Path, live: set[int]) -> set[int]:
        """Read a saved graph, keeping only ``live`` labels; returns those it holds.
        Called before any point is added."""
        with self.lock:
            graph = hnswlib.Index(space="cosine", dim=self.dimension)
            graph.load_index(str(path), allow_replace_deleted=True)
            stored = set(graph.get_ids_list())
            for label in stored - live:
                with contextlib.suppress(RuntimeError):  # deleted before the graph was saved
                    graph.mark_deleted(label)
            self.graph = graph
            self.in_graph = stored & live
            return set(self.in_graph)
