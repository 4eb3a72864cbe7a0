"""How the embedded-store candidates build their index, and what that does to other threads.

    pip install qdrant-edge-py==0.9.0 usearch==2.26.6   # not dependencies of the project
    OMP_NUM_THREADS=1 python bench/search_candidates.py [--points 30000]

For each installed candidate: insert ``--points`` 384-dim vectors (clustered around
topics), build its HNSW index on one thread, and meanwhile count how far a pure-Python
thread gets (compared with the same thread running alone: 1.0 means the build released
the GIL, near 0 means every request handler of the server would stall) and how many
searches a second thread completes. Then recall@10 against exact search on 200 queries.
This is the measurement behind docs/design.md's choice of hnswlib; nothing is asserted.
"""

from __future__ import annotations

import argparse
import importlib.util
import threading
import time
from collections.abc import Callable

import numpy as np

DIM = 384


def _data(points: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    topics = rng.standard_normal((500, DIM)).astype(np.float32)

    def draw(n: int) -> np.ndarray:
        rows = topics[rng.integers(0, 500, n)] + 0.9 * rng.standard_normal((n, DIM)).astype(
            np.float32
        )
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    return draw(points), draw(200)


def _spin_rate(seconds: float) -> float:
    count, stop = [0], threading.Event()

    def spin() -> None:
        while not stop.is_set():
            count[0] += 1

    thread = threading.Thread(target=spin)
    thread.start()
    time.sleep(seconds)
    stop.set()
    thread.join()
    return count[0] / seconds


def measure(
    name: str,
    build: Callable[[], None],
    search: Callable[[np.ndarray], list[int]],
    queries: np.ndarray,
    vectors: np.ndarray,
    alone: float,
) -> None:
    count, searches, stop = [0], [0], threading.Event()

    def spin() -> None:
        while not stop.is_set():
            count[0] += 1

    def ask() -> None:
        while not stop.is_set():
            try:
                search(queries[0])
                searches[0] += 1
            except RuntimeError:
                pass  # hnswlib refuses k=10 while fewer points are in
            time.sleep(0.01)

    threads = [threading.Thread(target=spin), threading.Thread(target=ask)]
    for thread in threads:
        thread.start()
    started = time.perf_counter()
    build()
    seconds = time.perf_counter() - started
    stop.set()
    for thread in threads:
        thread.join()
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    recall = np.mean(
        [len(set(search(q)) & set(e.tolist())) / 10 for q, e in zip(queries, exact, strict=False)]
    )
    print(
        f"{name:<14} {len(vectors) / seconds:>9.0f} {count[0] / seconds / alone:>11.2f} "
        f"{searches[0]:>9} {seconds:>8.1f} {recall:>7.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=30000)
    args = parser.parse_args()
    vectors, queries = _data(args.points)
    alone = _spin_rate(1.0)
    print(
        f"{'candidate':<14} {'build/s':>9} {'GIL free':>11} {'searches':>9} "
        f"{'build s':>8} {'rec@10':>7}"
    )
    if importlib.util.find_spec("hnswlib"):
        import hnswlib

        index = hnswlib.Index(space="cosine", dim=DIM)
        index.init_index(max_elements=len(vectors), M=16, ef_construction=100)
        index.set_num_threads(1)
        index.set_ef(64)
        measure(
            "hnswlib",
            lambda: index.add_items(vectors, np.arange(len(vectors))),
            lambda q: index.knn_query(q, k=10)[0][0].tolist(),
            queries,
            vectors,
            alone,
        )
    if importlib.util.find_spec("usearch"):
        from usearch.index import Index

        uindex = Index(
            ndim=DIM,
            metric="cos",
            dtype="f32",
            connectivity=16,
            expansion_add=100,
            expansion_search=64,
        )
        measure(
            "usearch",
            lambda: uindex.add(np.arange(len(vectors)), vectors, threads=1),
            lambda q: uindex.search(q, 10, threads=1).keys.tolist(),
            queries,
            vectors,
            alone,
        )
    if importlib.util.find_spec("qdrant_edge"):
        _qdrant_edge(vectors, queries, alone)


def _qdrant_edge(vectors: np.ndarray, queries: np.ndarray, alone: float) -> None:
    import tempfile

    import qdrant_edge as qe

    shard = qe.EdgeShard.create(
        tempfile.mkdtemp(),
        qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=DIM, distance=qe.Distance.Cosine),
            hnsw_config=qe.HnswIndexConfig(
                m=16, ef_construct=100, full_scan_threshold=10000, max_indexing_threads=1
            ),
        ),
    )
    for start in range(0, len(vectors), 512):  # inserting is fast: plain segments
        shard.update(
            qe.UpdateOperation.upsert_points(
                [
                    qe.Point(i, vectors[i].tolist(), {})
                    for i in range(start, min(len(vectors), start + 512))
                ]
            )
        )

    def search(q: np.ndarray) -> list[int]:
        found = shard.query(qe.QueryRequest(limit=10, query=qe.Query.Nearest(q.tolist())))
        return [int(p.id) for p in found]

    measure("qdrant-edge", lambda: shard.optimize(), search, queries, vectors, alone)


if __name__ == "__main__":
    main()
