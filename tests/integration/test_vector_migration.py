"""Data dirs of Qdrant local mode move into the embedded store, losing nothing.

The local-mode directory is generated here, at test time, the way releases up to 0.1.x
wrote it (``qdrant-client`` local mode, collection ``morag_chunks`` with the model in its
metadata, one unnamed cosine vector, ids ``point_id(user, task, chunk)``, the chunk
payload). ``test_upgrade.py`` checks the same move on the data dir the released server
recorded itself. The migration runs through the real ``morag-server migrate``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("qdrant_client")
pytest.importorskip("hnswlib")

from qdrant_client import QdrantClient, models

from morag_worker.server.embedded_store import EmbeddedStore, StoredPoint
from morag_worker.server.storage import point_id
from morag_worker.server.vector_migration import migrate_local_mode

DIM = 384
MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def _write_local_mode(path: Path, users: int, tasks: int, chunks: int) -> dict[str, StoredPoint]:
    """A release-0.1.x local-mode store: what its ChunkStore wrote for these chunks."""
    rng = np.random.default_rng(7)
    client = QdrantClient(path=str(path))
    client.create_collection(
        "morag_chunks",
        vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE),
        metadata={"embedding_model": MODEL},
    )
    written: dict[str, StoredPoint] = {}
    for u in range(users):
        for t in range(tasks):
            batch = []
            for c in range(chunks):
                user, task = f"user{u}", f"t_{u}_{t}"
                vector = rng.standard_normal(DIM).astype(np.float32)
                vector /= np.linalg.norm(vector)
                payload = {
                    "user_id": user,
                    "task_id": task,
                    "source": f"doc{t}.md",
                    "task_type": "document",
                    "embedding_model": MODEL,
                    "chunk_index": c,
                    "text": f"chunk {c} of task {t} of {user}",
                    "heading_path": ["Doc", f"Part {c}"],
                    "page": c + 1,
                    "start_s": None,
                    "end_s": None,
                }
                pid = point_id(user, task, c)
                written[pid] = StoredPoint(pid, vector.tolist(), payload)
                batch.append(models.PointStruct(id=pid, vector=vector.tolist(), payload=payload))
            client.upsert("morag_chunks", points=batch, wait=True)
    client.close()
    return written


def _migrate(data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "morag_worker.cli.server", "migrate", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_morag_server_migrate_moves_every_point_unchanged(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    written = _write_local_mode(data_dir / "qdrant", users=3, tasks=4, chunks=30)
    check = subprocess.run(
        [
            sys.executable,
            "-m",
            "morag_worker.cli.server",
            "migrate",
            "--check",
            "--data-dir",
            str(data_dir),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 1 and "every migration is pending" in check.stdout

    run = _migrate(data_dir)
    assert run.returncode == 0, run.stderr
    assert "360 points moved" in run.stderr and "0 step(s) pending" in run.stdout
    assert not (data_dir / "qdrant").exists() and (data_dir / "qdrant.migrated").is_dir()

    store = EmbeddedStore(data_dir / "vectors", DIM, MODEL)
    try:
        moved = {p.point_id: p for p in store.scroll()}
        assert moved.keys() == written.keys()
        for pid, point in written.items():
            assert moved[pid].payload == point.payload
            assert np.allclose(moved[pid].vector, point.vector, atol=1e-6)
        # Each user finds its own nearest point, and only its own.
        for pid in list(written)[::37]:
            point = written[pid]
            user = point.payload["user_id"]
            found = store.search(user, point.vector, 3, {})
            assert found[0][1]["chunk_index"] == point.payload["chunk_index"]
            assert found[0][1]["task_id"] == point.payload["task_id"]
            assert {p["user_id"] for _, p in found} == {user}
    finally:
        store.close()
    again = _migrate(data_dir)  # nothing left to do, nothing changed
    assert again.returncode == 0 and "moved" not in again.stderr


def test_a_migration_cut_short_copies_again_without_duplicates(tmp_path: Path) -> None:
    written = _write_local_mode(tmp_path / "qdrant", users=2, tasks=2, chunks=25)
    # As if the process died half way: part of the points are in the target already.
    partial = EmbeddedStore(tmp_path / "vectors", DIM, MODEL)
    partial.upsert(list(written.values())[:40])
    partial.close()
    lines: list[str] = []
    assert migrate_local_mode(tmp_path / "qdrant", tmp_path / "vectors", lines.append) == 100
    assert any("copied 100 of 100" in line for line in lines)
    store = EmbeddedStore(tmp_path / "vectors", DIM, MODEL)
    assert store.total() == 100 and {p.point_id for p in store.scroll()} == written.keys()
    store.close()
    # Nothing at the source any more: a second run copies nothing.
    assert migrate_local_mode(tmp_path / "qdrant", tmp_path / "vectors", lines.append) == 0
