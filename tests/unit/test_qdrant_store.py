"""The Qdrant server backend keeps the layout and answers as the embedded store does.

No Qdrant server can run on this machine (none is installable from the package
registries), so the backend runs against qdrant-client's in-process implementation of
the same API (``:memory:``): the calls, the collection layout, the filters and the point
ids are the ones a server receives; its HNSW and network are not exercised here.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("qdrant_client")
pytest.importorskip("hnswlib")

from morag_worker.errors import ConfigError
from morag_worker.server.embedded_store import EmbeddedStore, StoredPoint
from morag_worker.server.qdrant_store import QdrantStore
from morag_worker.server.storage import point_id

DIM = 16


def _points() -> list[StoredPoint]:
    rng = np.random.default_rng(3)
    points = []
    for user in ("alice", "bob"):
        for task in range(3):
            for chunk in range(10):
                vector = rng.standard_normal(DIM)
                vector /= np.linalg.norm(vector)
                payload = {
                    "user_id": user,
                    "task_id": f"{user}-t{task}",
                    "source": f"s{task % 2}.md",
                    "task_type": "document",
                    "chunk_index": chunk,
                    "text": f"{user} {task} {chunk}",
                }
                points.append(
                    StoredPoint(point_id(user, payload["task_id"], chunk), vector.tolist(), payload)
                )
    return points


def _qdrant() -> QdrantStore:
    return QdrantStore(":memory:", lambda: DIM, "test-model")


def test_both_stores_return_the_same_points_for_the_same_queries(tmp_path: Path) -> None:
    warnings.simplefilter("ignore")  # in-process Qdrant warns that payload indexes do nothing
    points = _points()
    remote, embedded = _qdrant(), EmbeddedStore(tmp_path / "v", DIM, "test-model")
    for store in (remote, embedded):
        store.upsert(points)
    assert {p.point_id for p in remote.scroll()} == {p.point_id for p in points}
    for query in points[::7]:
        for filters in ({}, {"task_id": ["alice-t1", "bob-t2"]}, {"source": ["s1.md"]}):
            found = [
                [
                    (round(score, 4), p["task_id"], p["chunk_index"])
                    for score, p in store.search("alice", query.vector, 5, filters)
                ]
                for store in (remote, embedded)
            ]
            assert found[0] == found[1] and found[0]
            assert all(task.startswith("alice") for _, task, _ in found[0])
    keep = {points[0].point_id, points[1].point_id}
    assert [s.delete_task("alice", "alice-t0", keep=keep) for s in (remote, embedded)] == [8, 8]
    assert [s.count("alice") for s in (remote, embedded)] == [22, 22]
    embedded.close()
    remote.close()


def test_a_collection_of_another_dimension_is_refused() -> None:
    warnings.simplefilter("ignore")
    store = _qdrant()
    store.upsert(_points()[:1])
    store._dimension_of = lambda: DIM * 2
    store._ready = False  # as a server restarted with another model would find it
    with pytest.raises(ConfigError, match=f"dimension {DIM}"):
        store.count("alice")
