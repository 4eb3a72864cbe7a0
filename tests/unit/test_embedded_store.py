"""The embedded vector store on generated vectors: graph search against exact search,
replacement and deletion inside graphs, reopening, a killed process, threads.

Real SQLite files and real hnswlib graphs in a temporary directory; the partitions are
made small (``min_points``) so that graphs are built from a few hundred points.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("hnswlib")

from morag_worker.errors import ConfigError
from morag_worker.server import embedded_store
from morag_worker.server.embedded_store import EmbeddedStore, StoredPoint
from morag_worker.server.hnsw_partition import HnswParams

DIM = 32
SMALL = HnswParams(min_points=100, build_step=40)


def _vectors(count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    topics = rng.standard_normal((20, DIM))
    rows = topics[rng.integers(0, 20, count)] + 0.7 * rng.standard_normal((count, DIM))
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def _points(user: str, vectors: np.ndarray, task: str = "t", start: int = 0) -> list[StoredPoint]:
    return [
        StoredPoint(
            str(uuid.uuid5(uuid.NAMESPACE_URL, f"{user}/{task}/{start + i}")),
            vector.tolist(),
            {"user_id": user, "task_id": f"{task}{(start + i) % 5}", "chunk_index": start + i},
        )
        for i, vector in enumerate(vectors)
    ]


def _exact(vectors: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    return [int(i) for i in np.argsort(-(vectors @ query))[:k]]


def _ids(found: list[tuple[float, dict]]) -> list[int]:
    return [payload["chunk_index"] for _, payload in found]


@pytest.fixture
def store(tmp_path: Path):
    opened = EmbeddedStore(tmp_path / "vectors", DIM, "test-model", SMALL)
    yield opened
    opened.close()


def test_graph_search_finds_the_exact_neighbours_of_each_user_only(store: EmbeddedStore) -> None:
    alice, bob = _vectors(600, 1), _vectors(300, 2)
    store.upsert(_points("alice", alice))
    store.upsert(_points("bob", bob))
    store.build_all()
    assert store.unindexed() == 0
    hits = 0
    for query in _vectors(50, 3):
        found = store.search("alice", query.tolist(), 10, {})
        assert {p["user_id"] for _, p in found} == {"alice"}
        hits += len(set(_ids(found)) & set(_exact(alice, query, 10)))
        scores = [score for score, _ in found]
        assert scores == sorted(scores, reverse=True)
    assert hits / 500 >= 0.95
    assert store.search("carol", alice[0].tolist(), 5, {}) == []
    assert (store.count("alice"), store.count("bob"), store.total()) == (600, 300, 900)


def test_filters_select_exactly_or_through_the_graph(store: EmbeddedStore, monkeypatch) -> None:
    vectors = _vectors(500, 4)
    store.upsert(_points("alice", vectors))
    store.build_all()
    wanted = {i for i in range(500) if i % 5 in (1, 3)}
    for limit_exact in (100000, 10):  # the second forces the graph's label filter
        monkeypatch.setattr(embedded_store, "EXACT_FILTER_MAX", limit_exact)
        for query in _vectors(10, 5):
            found = store.search("alice", query.tolist(), 8, {"task_id": ["t1", "t3"]})
            assert set(_ids(found)) <= wanted and len(found) == 8
            best = max(wanted, key=lambda i: float(vectors[i] @ query))
            assert _ids(found)[0] == best


def test_replaced_and_deleted_points_leave_graph_and_tail(store: EmbeddedStore) -> None:
    first = _vectors(300, 6)
    store.upsert(_points("alice", first))
    store.build_all()
    store.upsert(_points("alice", _vectors(20, 7), start=300))  # these stay in the tail
    # The same ids with new vectors: the old vectors must no longer be found.
    replacement = _vectors(300, 8)
    store.upsert(_points("alice", replacement))
    assert store.count("alice") == 320
    found = store.search("alice", first[0].tolist(), 1, {})
    assert found[0][0] < 0.99 or _ids(found) != [0]
    found = store.search("alice", replacement[0].tolist(), 1, {})
    assert _ids(found) == [0] and found[0][0] > 0.99
    removed = store.delete_task("alice", "t0")
    assert removed == 64 and store.count("alice") == 256
    for query in _vectors(20, 9):
        assert all(i % 5 != 0 for i in _ids(store.search("alice", query.tolist(), 20, {})))
    kept = store.delete_task("alice", "t1", keep={_points("alice", replacement)[1].point_id})
    assert kept == 63 and store.count("alice") == 193


def test_graphs_are_saved_and_reconciled_when_reopened(tmp_path: Path) -> None:
    vectors = _vectors(400, 10)
    first = EmbeddedStore(tmp_path / "v", DIM, "test-model", SMALL)
    first.upsert(_points("alice", vectors))
    first.build_all()
    first.close()
    assert list((tmp_path / "v" / "graphs").glob("*.hnsw"))
    second = EmbeddedStore(tmp_path / "v", DIM, "test-model", SMALL)
    assert second.unindexed() == 0  # the saved graph was loaded, nothing rebuilt
    query = vectors[7].tolist()
    assert _ids(second.search("alice", query, 1, {})) == [7]
    # Deleted after the save: a store opened later must not return them.
    second.delete_task("alice", "t2")
    second._dirty.clear()  # as if the process died before saving the graph
    second._stop.set()
    second._db.close()
    third = EmbeddedStore(tmp_path / "v", DIM, "test-model", SMALL)
    assert all(i % 5 != 2 for i in _ids(third.search("alice", query, 50, {})))
    assert third.count("alice") == 320
    third.close()


def test_other_dimensions_and_models_are_refused(tmp_path: Path) -> None:
    EmbeddedStore(tmp_path / "v", DIM, "test-model").close()
    with pytest.raises(ConfigError, match="dimension 32"):
        EmbeddedStore(tmp_path / "v", 64, "test-model")
    with pytest.raises(ConfigError, match="built with the embedding model test-model"):
        EmbeddedStore(tmp_path / "v", DIM, "other-model")


KILLED_WRITER = """
import json, os, signal, sys, uuid
import numpy as np
from morag_worker.server.embedded_store import EmbeddedStore, StoredPoint
from morag_worker.server.hnsw_partition import HnswParams
store = EmbeddedStore(__import__("pathlib").Path(sys.argv[1]), 32, "test-model",
                      HnswParams(min_points=100, build_step=40))
vectors = np.load(sys.argv[2])
points = [StoredPoint(str(uuid.uuid5(uuid.NAMESPACE_URL, str(i))), v.tolist(),
                      {"user_id": "alice", "task_id": "t", "chunk_index": i})
          for i, v in enumerate(vectors)]
for start in range(0, len(points), 50):
    store.upsert(points[start:start + 50])
print(json.dumps(store.total()), flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # no close: no graph saved, nothing flushed by us
"""


def test_a_killed_process_loses_no_stored_point(tmp_path: Path) -> None:
    vectors = _vectors(450, 11)
    np.save(tmp_path / "v.npy", vectors)
    run = subprocess.run(
        [sys.executable, "-c", KILLED_WRITER, str(tmp_path / "store"), str(tmp_path / "v.npy")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == -9 and json.loads(run.stdout) == 450, run.stderr
    reopened = EmbeddedStore(tmp_path / "store", DIM, "test-model", SMALL)
    assert reopened.total() == 450
    for i in (0, 123, 449):  # searchable at once from the exact tail
        assert _ids(reopened.search("alice", vectors[i].tolist(), 1, {})) == [i]
    reopened.build_all()
    assert reopened.unindexed() == 0
    assert _ids(reopened.search("alice", vectors[321].tolist(), 1, {})) == [321]
    reopened.close()


def test_searches_run_while_points_are_written_and_graphs_built(store: EmbeddedStore) -> None:
    vectors = _vectors(1200, 12)
    errors: list[BaseException] = []
    done = threading.Event()

    def search() -> None:
        try:
            while not done.is_set():
                for query in vectors[:20]:
                    found = store.search("alice", query.tolist(), 5, {})
                    assert {p["user_id"] for _, p in found} <= {"alice"}
        except BaseException as exc:  # reported on the test's thread
            errors.append(exc)

    readers = [threading.Thread(target=search) for _ in range(3)]
    for reader in readers:
        reader.start()
    for start in range(0, 1200, 100):
        store.upsert(_points("alice", vectors[start : start + 100], start=start))
    store.build_all()
    done.set()
    for reader in readers:
        reader.join(timeout=60)
    assert errors == []
    assert store.count("alice") == 1200 and store.unindexed() == 0
    for i in (5, 600, 1199):
        assert _ids(store.search("alice", vectors[i].tolist(), 1, {})) == [i]


def test_writers_do_not_wait_for_a_build_step(store: EmbeddedStore) -> None:
    first = _vectors(300, 13)
    store.upsert(_points("alice", first))
    store.build_all()
    partition = store._partitions["alice"]
    added, replaced = _vectors(50, 14), _vectors(10, 15)
    with partition.lock:  # as the builder holds it while it inserts into the graph
        writer = threading.Thread(
            target=lambda: (
                store.upsert(_points("alice", added, start=300)),
                store.upsert(_points("alice", replaced)),  # ids 0-9 get new vectors
                store.delete_task("alice", "t4"),
            )
        )
        writer.start()
        writer.join(timeout=60)
        assert not writer.is_alive()
    # The next search applies what the writers noted, in their order.
    assert _ids(store.search("alice", added[7].tolist(), 1, {})) == [307]
    assert store.search("alice", first[3].tolist(), 1, {})[0][0] < 0.99
    assert _ids(store.search("alice", replaced[3].tolist(), 1, {})) == [3]
    assert all(i % 5 != 4 for i in _ids(store.search("alice", first[9].tolist(), 50, {})))
    assert store.count("alice") == 350 - 70
    store.build_all()
    assert store.unindexed() == 0 and len(partition) == 280


def _eventually(condition) -> bool:
    for _ in range(600):
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_the_builder_waits_for_writers_unless_a_tail_grows_long(
    store: EmbeddedStore, monkeypatch
) -> None:
    monkeypatch.setattr(embedded_store, "WRITE_QUIET_S", 3600.0)  # writers seem busy
    vectors = _vectors(300, 16)
    store.upsert(_points("alice", vectors))
    time.sleep(3 * embedded_store.BUILD_IDLE_S)  # builder passes go by
    assert store.unindexed() == 300  # searched exactly meanwhile
    assert _ids(store.search("alice", vectors[5].tolist(), 1, {})) == [5]
    monkeypatch.setattr(embedded_store, "DEFER_TAIL_MAX", 200)  # a tail too long to wait
    assert _eventually(lambda: store.unindexed() < 200)
    monkeypatch.setattr(embedded_store, "WRITE_QUIET_S", 0.0)  # writers done
    assert _eventually(lambda: store.unindexed() == 0)
    assert _ids(store.search("alice", vectors[5].tolist(), 1, {})) == [5]
