"""The embedded vector store at 10k, 100k and 1M chunks, against Qdrant local mode.

    OMP_NUM_THREADS=1 python bench/search.py [--sizes 10000,100000,1000000]

Per size: 100 users; 384-dim vectors generated around topics (every document has a
topic, every chunk lies near its document: nearest neighbours at cosine 0.6-0.8 and
unrelated chunks near 0, as with all-MiniLM-L6-v2 on real text) with realistic payloads
(~150 words of text, headings, page, source). Measured: upsert rate (durable, in
batches of 256) over the whole load and over its last tenth (into a store 90-100 %
full: the rate at that size), graph build rate (points over the time from the first
upsert until every user's graph holds all points; the builder waits while upserts go
on), search p50/p99 for the top 10 of one user
(the user filter every search has), recall@10 against exact search on 200 sampled
queries, process memory (RSS growth) and disk. Qdrant local mode, the store of releases
up to 0.1.x, is measured the same way where it finishes in minutes (``--baseline-max``).
Query embedding (a few ms with MiniLM on a CPU) is left out: this measures the store.
``--upsert-only`` measures the upserts alone (no graph wait, no searches: a million
in about five minutes). Nothing here asserts a time: read the table.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from morag_worker.server.embedded_store import EmbeddedStore, StoredPoint

DIM = 384
USERS = 100
#: Chunks per document (task): a 20-page report.
CHUNKS_PER_TASK = 20
#: Topics shared by all users: documents of one user cluster without being copies.
TOPICS = 2000
BATCH = 256
QUERIES = 200
_WORDS = [
    "model",
    "worker",
    "queue",
    "lease",
    "vector",
    "search",
    "document",
    "page",
    "table",
    "heading",
    "audio",
    "speaker",
    "transcript",
    "chunk",
    "embedding",
    "server",
    "cluster",
    "retry",
    "result",
    "token",
    "budget",
    "harbour",
    "tide",
    "the",
    "a",
    "of",
    "to",
    "and",
    "in",
    "is",
    "for",
    "on",
    "with",
    "that",
    "by",
    "from",
    "as",
    "at",
]


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


class Corpus:
    """Deterministic chunks: batch ``b`` is the same on every call (seeded by ``b``)."""

    def __init__(self, size: int) -> None:
        self.size = size
        rng = np.random.default_rng(0)
        self.topics = rng.standard_normal((TOPICS, DIM)).astype(np.float32)
        self.text = " ".join(rng.choice(_WORDS, 150))

    def center(self, task: int) -> np.ndarray:
        """A document's centre: its topic plus what makes this document its own."""
        rng = np.random.default_rng(task + 10**9)
        return self.topics[rng.integers(TOPICS)] + 0.8 * rng.standard_normal(DIM)

    def batch(self, start: int) -> tuple[np.ndarray, list[dict]]:
        count = min(BATCH, self.size - start)
        rng = np.random.default_rng(start + 1)
        tasks = (start + np.arange(count)) // CHUNKS_PER_TASK
        centers = np.stack([self.center(int(t)) for t in tasks])
        vectors = _unit(centers + 0.9 * rng.standard_normal((count, DIM)).astype(np.float32))
        payloads = []
        for i, task in enumerate(tasks):
            index = (start + i) % CHUNKS_PER_TASK
            payloads.append(
                {
                    "user_id": f"user{int(task) % USERS}",
                    "task_id": f"t_{int(task):012x}",
                    "source": f"report-{int(task)}.pdf",
                    "task_type": "document",
                    "embedding_model": "sentence-transformers/all-MiniLM-L6-v2",
                    "chunk_index": index,
                    "text": self.text,
                    "page": index + 1,
                    "heading_path": ["Report", f"Section {index // 4}"],
                    "start_s": None,
                    "end_s": None,
                }
            )
        return vectors, payloads

    def batches(self) -> Iterator[tuple[np.ndarray, list[dict]]]:
        for start in range(0, self.size, BATCH):
            yield self.batch(start)

    def queries(self) -> list[tuple[str, np.ndarray]]:
        """Questions about stored documents, worded like none of their chunks: each is
        a fresh draw around a document's centre, as far from its chunks (cosine ~0.5)
        as they are from each other."""
        rng = np.random.default_rng(99)
        picked = []
        tasks = max(1, self.size // CHUNKS_PER_TASK)
        for _ in range(QUERIES):
            task = int(rng.integers(tasks))
            noise = 0.9 * rng.standard_normal((1, DIM))
            picked.append((f"user{task % USERS}", _unit(self.center(task) + noise)[0]))
        return picked


def _rss() -> int:
    return int(psutil.Process().memory_info().rss)


def _disk(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2] * 1e3, ordered[int(len(ordered) * 0.99)] * 1e3


def _exact(path: Path, user: str, query: np.ndarray) -> list[str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT point_id, vector FROM points WHERE user_id = ?", (user,))
        ids, blobs = zip(*rows.fetchall(), strict=True)
    matrix = np.frombuffer(b"".join(blobs), np.float32).reshape(-1, DIM)
    return [ids[i] for i in np.argsort(-(matrix @ query))[:10]]


def _pid(payload: dict) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_OID, f"{payload['task_id']}/{payload['chunk_index']}"))


def run_embedded(corpus: Corpus, root: Path, upsert_only: bool = False) -> dict[str, float]:
    before = _rss()
    store = EmbeddedStore(root / "embedded", DIM, "bench")
    upsert_s = last_s = 0.0  # time inside upsert only, not generating the corpus
    last_from, last_n = corpus.size - corpus.size // 10, 0  # the last tenth of the load
    started = time.perf_counter()
    for number, (vectors, payloads) in enumerate(corpus.batches()):
        points = [
            StoredPoint(_pid(p), v.tolist(), p) for v, p in zip(vectors, payloads, strict=True)
        ]
        t = time.perf_counter()
        store.upsert(points)
        spent = time.perf_counter() - t
        upsert_s += spent
        if number * BATCH >= last_from:
            last_s, last_n = last_s + spent, last_n + len(points)
        if number % 400 == 399:
            print(f"  upserted {(number + 1) * BATCH}", file=sys.stderr, flush=True)
    upsert_end = time.perf_counter()
    rates = {
        "upsert_per_s": corpus.size / upsert_s,
        "last_per_s": last_n / last_s if last_n else float("nan"),
    }
    if upsert_only:
        store.close()
        nan = float("nan")
        rss, disk = _rss() - before, _disk(root / "embedded")
        return rates | dict(build_per_s=nan, p50_ms=nan, p99_ms=nan, recall=nan, rss=rss, disk=disk)
    while store.unindexed():
        print(f"  waiting for graphs: {store.unindexed()} points left", file=sys.stderr, flush=True)
        time.sleep(10)
    # The builder runs from the first upsert on; its rate is points over the whole span.
    built = time.perf_counter() - started if time.perf_counter() > upsert_end + 1 else None
    rss = _rss() - before
    queries = corpus.queries()
    latencies, found = [], []
    for user, query in queries:
        t = time.perf_counter()
        hits = store.search(user, query.tolist(), 10, {})
        latencies.append(time.perf_counter() - t)
        found.append([_pid(p) for _, p in hits])
    store.close()
    db = root / "embedded" / "points.sqlite3"
    recall = np.mean(
        [len(set(f) & set(_exact(db, u, q))) / 10 for f, (u, q) in zip(found, queries, strict=True)]
    )
    p50, p99 = _percentiles(latencies)
    return rates | {
        "build_per_s": corpus.size / built if built else float("nan"),
        "p50_ms": p50,
        "p99_ms": p99,
        "recall": float(recall),
        "rss": rss,
        "disk": _disk(root / "embedded"),
    }


def run_local_mode(corpus: Corpus, root: Path) -> dict[str, float]:
    from qdrant_client import QdrantClient, models

    before = _rss()
    client = QdrantClient(path=str(root / "local"))
    client.create_collection(
        "c", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE)
    )
    spent = []
    for vectors, payloads in corpus.batches():
        points = [
            models.PointStruct(id=_pid(p), vector=v.tolist(), payload=p)
            for v, p in zip(vectors, payloads, strict=True)
        ]
        t = time.perf_counter()
        client.upsert("c", points=points)
        spent.append((len(points), time.perf_counter() - t))
    last = spent[len(spent) - max(1, len(spent) // 10) :]
    rss = _rss() - before
    latencies = []
    for user, query in corpus.queries()[:50]:
        scope = models.Filter(
            must=[models.FieldCondition(key="user_id", match=models.MatchValue(value=user))]
        )
        t = time.perf_counter()
        client.query_points("c", query=query.tolist(), query_filter=scope, limit=10)
        latencies.append(time.perf_counter() - t)
    client.close()
    p50, p99 = _percentiles(latencies)
    return {
        "upsert_per_s": corpus.size / sum(t for _, t in spent),
        "last_per_s": sum(n for n, _ in last) / sum(t for _, t in last),
        "build_per_s": float("nan"),
        "p50_ms": p50,
        "p99_ms": p99,
        "recall": 1.0,
        "rss": rss,
        "disk": _disk(root / "local"),
    }


def _row(size: int, name: str, r: dict[str, float], base: dict[str, float] | None) -> str:
    ratio = f"{base['p50_ms'] / r['p50_ms']:>8.0f}x" if base and name == "embedded" else " " * 9
    mb = 1 << 20
    return (
        f"{size:>9,} {name:<10} {r['upsert_per_s']:>9,.0f} {r['last_per_s']:>9,.0f} "
        f"{r['build_per_s']:>9,.0f} "
        f"{r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['recall']:>6.3f} "
        f"{r['rss'] / mb:>8.0f} {r['disk'] / mb:>8.0f} {ratio}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="10000,100000,1000000", help="comma-separated chunk counts"
    )
    parser.add_argument(
        "--baseline-max",
        type=int,
        default=10000,
        help="largest size Qdrant local mode is measured at",
    )
    parser.add_argument("--dir", default="", help="work directory (default: a temporary one)")
    parser.add_argument(
        "--upsert-only",
        action="store_true",
        help="measure upserts alone: no graph wait, no searches, no baseline",
    )
    args = parser.parse_args()
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--sizes takes chunk counts separated by commas, not {args.sizes!r}")
    if not sizes or min(sizes) < 10 * BATCH:
        parser.error(f"--sizes: each size must be at least {10 * BATCH} (ten batches)")
    print(
        f"{'chunks':>9} {'store':<10} {'upsert/s':>9} {'last 10%':>9} {'build/s':>9} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'rec@10':>6} {'RSS MiB':>8} {'disk MiB':>8} {'p50 gain':>9}"
    )
    for size in sizes:
        root = Path(tempfile.mkdtemp(prefix="morag-bench-", dir=args.dir or None))
        try:
            corpus = Corpus(size)
            local = size <= args.baseline_max and not args.upsert_only
            base = run_local_mode(corpus, root) if local else None
            if base:
                print(_row(size, "local mode", base, None), flush=True)
            result = run_embedded(corpus, root, args.upsert_only)
            print(_row(size, "embedded", result, base), flush=True)
        finally:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
