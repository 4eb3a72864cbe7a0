"""Putting models into the Hugging Face cache: fetch from the Hub, import, export.

``fetch`` downloads through ``huggingface_hub`` into the cache the supervisor and the
server read (``HF_HOME``): progress bars on stderr, interrupted downloads resume where
they stopped, ``HF_TOKEN`` opens gated repositories. ``import`` brings models to hosts
without internet: a tarball or directory of cache entries (what ``export`` writes), or a
plain model directory installed under the name given with ``--as``. Entries written here
are ordinary cache entries (content-addressed blobs, a snapshot of links, ``refs/main``),
so the loaders' local-only lookups find them exactly as if they had been downloaded.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import tempfile
from pathlib import Path

from morag_worker.errors import ConfigError
from morag_worker.models.catalog import ModelRef, classify, current_snapshot, hub_cache

#: Files a faster-whisper model needs (faster-whisper's own download list).
WHISPER_FILES = [
    "config.json",
    "preprocessor_config.json",
    "model.bin",
    "tokenizer.json",
    "vocabulary.*",
]
#: Formats sentence-transformers never loads: skipping them keeps a fetch to the weights
#: that are used (a repository often holds the same weights in five formats).
EMBEDDING_SKIP = ["*.h5", "*.ot", "*.msgpack", "onnx/*", "openvino/*", "*.tflite", "coreml/*"]
#: Files that mark a directory as a model of each kind, for ``import --as``.
MARKERS = {"whisper": "model.bin", "embedding": "modules.json", "pyannote": "config.yaml"}


def repo_dir(repo_id: str, cache: Path | None = None) -> Path:
    return (cache or hub_cache()) / ("models--" + repo_id.replace("/", "--"))


# ---- import ------------------------------------------------------------------------------


def _cache_entries(root: Path) -> list[Path]:
    """``models--*`` repositories in ``root`` (itself one, or holding them, or a ``hub/``)."""
    if root.name.startswith("models--"):
        return [root]
    for base in (root, root / "hub"):
        entries = sorted(p for p in base.glob("models--*") if p.is_dir())
        if entries:
            return entries
    return []


def _merge_entry(entry: Path, cache: Path, move: bool) -> Path:
    """Copy (or move) one cache entry into ``cache``; blobs already there are kept."""
    target = cache / entry.name
    target.mkdir(parents=True, exist_ok=True)
    for part in ("blobs", "snapshots", "refs"):
        source = entry / part
        if not source.is_dir():
            continue
        if move and not (target / part).exists():
            shutil.move(str(source), str(target / part))
        else:
            shutil.copytree(source, target / part, symlinks=True, dirs_exist_ok=True)
    if current_snapshot(target) is None:
        raise ConfigError(f"{entry.name}: the cache entry holds no snapshot; nothing usable")
    return target


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def install_directory(model_dir: Path, ref: ModelRef, cache: Path | None = None) -> Path:
    """Install a plain model directory as the cache entry of ``ref``'s repository;
    returns the snapshot. Its revision is derived from the content, so importing the
    same files twice is a no-op and different files never overwrite a snapshot."""
    marker = MARKERS.get(ref.kind)
    if marker and not (model_dir / marker).is_file():
        raise ConfigError(f"{model_dir}: no {marker}, so not a {ref.kind} model directory")
    target = repo_dir(ref.repo_id(), cache)
    files = sorted(p for p in model_dir.rglob("*") if p.is_file())
    hashes = {p: _sha256(p) for p in files}
    listing = "\n".join(f"{p.relative_to(model_dir)} {hashes[p]}" for p in files)
    revision = hashlib.sha1(listing.encode()).hexdigest()
    snapshot = target / "snapshots" / revision
    for path in files:
        blob = target / "blobs" / hashes[path]
        if not blob.exists():
            blob.parent.mkdir(parents=True, exist_ok=True)
            tmp = blob.with_suffix(".importing")
            shutil.copyfile(path, tmp)
            tmp.replace(blob)
        link = snapshot / path.relative_to(model_dir)
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            depth = len(link.relative_to(target).parts) - 1
            link.symlink_to(Path(*([".."] * depth), "blobs", hashes[path]))
    (target / "refs").mkdir(exist_ok=True)
    (target / "refs" / "main").write_text(revision)
    return snapshot


def _kind_of(model_dir: Path) -> str | None:
    return next((kind for kind, marker in MARKERS.items() if (model_dir / marker).is_file()), None)


def _single_root(root: Path) -> Path:
    """A tarball of one directory: that directory."""
    children = list(root.iterdir())
    return children[0] if len(children) == 1 and children[0].is_dir() else root


def import_models(source: Path, as_ref: ModelRef | None = None) -> list[tuple[ModelRef, Path]]:
    """Import cache entries or one plain model directory from ``source`` (a directory or a
    tarball); returns what was imported and where. ConfigError says what was wrong."""
    cache = hub_cache()
    cache.mkdir(parents=True, exist_ok=True)
    if not source.exists():
        raise ConfigError(f"{source}: no such file or directory")
    if source.is_file():
        if not tarfile.is_tarfile(source):
            raise ConfigError(f"{source}: not a tar archive (.tar, .tar.gz) nor a directory")
        # Extracted next to the cache: moving from there into the cache is a rename.
        with tempfile.TemporaryDirectory(dir=cache, prefix=".import-") as tmp:
            try:
                with tarfile.open(source) as archive:
                    archive.extractall(tmp, filter="data")  # no absolute paths, no escapes
            except (tarfile.TarError, OSError) as exc:
                raise ConfigError(f"{source}: cannot unpack it safely ({exc})") from None
            return _import_tree(_single_root(Path(tmp)), as_ref, cache, move=True)
    return _import_tree(source, as_ref, cache, move=False)


def _import_tree(
    root: Path, as_ref: ModelRef | None, cache: Path, move: bool
) -> list[tuple[ModelRef, Path]]:
    entries = _cache_entries(root)
    if entries:
        if as_ref is not None:
            raise ConfigError("--as names a plain model directory; this holds cache entries")
        imported = []
        for entry in entries:
            target = _merge_entry(entry, cache, move)
            repo_id = entry.name[len("models--") :].replace("--", "/")
            imported.append((classify(repo_id, current_snapshot(target)), target))
        return imported
    kind = _kind_of(root)
    if kind is None:
        raise ConfigError(
            f"{root}: neither Hugging Face cache entries (models--…) nor a model directory "
            f"(one holding {', '.join(MARKERS.values())})"
        )
    if as_ref is None:
        raise ConfigError(
            f"{root} is a {kind} model directory: say which name it serves, e.g. "
            f"--as {kind}:NAME (the name --preload and the model flags use)"
        )
    if as_ref.kind != kind:
        raise ConfigError(f"--as {as_ref.spec}: {root} holds a {kind} model, not {as_ref.kind}")
    return [(as_ref, install_directory(root, as_ref, cache))]


# ---- export ------------------------------------------------------------------------------


def export_models(refs: list[ModelRef], output: Path) -> list[Path]:
    """Write the cache entries of ``refs`` into the tarball ``output`` (gzip for .gz/.tgz)."""
    entries = []
    for ref in refs:
        entry = repo_dir(ref.repo_id())
        if current_snapshot(entry) is None:
            raise ConfigError(f"{ref.spec}: not in the cache at {hub_cache()}; fetch it first")
        entries.append(entry)
    gzip = output.name.endswith((".gz", ".tgz"))
    with tarfile.open(output, "w:gz") if gzip else tarfile.open(output, "w") as archive:
        for entry in entries:
            archive.add(entry, arcname=entry.name)  # links stay links: blobs are not doubled
    return entries


# ---- fetch -------------------------------------------------------------------------------


class FetchError(Exception):
    """A download did not happen; the message says what to check."""


def _patterns(ref: ModelRef) -> tuple[list[str] | None, list[str] | None]:
    """(allow, ignore) patterns: only the files the kind's loader reads."""
    if ref.kind == "whisper":
        return WHISPER_FILES, None
    if ref.kind == "embedding":
        return None, EMBEDDING_SKIP
    return None, None


def _explain(exc: Exception, repo_id: str) -> FetchError:
    """One line on what failed and what to do, from huggingface_hub's exception."""
    from huggingface_hub import constants, errors

    endpoint = constants.ENDPOINT
    if isinstance(exc, errors.GatedRepoError):
        return FetchError(
            f"{repo_id} is gated: accept its conditions at {endpoint}/{repo_id} while logged "
            "in, then set HF_TOKEN to an access token of that account"
        )
    if isinstance(exc, errors.RepositoryNotFoundError):
        return FetchError(
            f"{repo_id}: no such repository at {endpoint} (a private one needs HF_TOKEN)"
        )
    if isinstance(exc, errors.RevisionNotFoundError):
        return FetchError(f"{repo_id}: no such revision")
    if isinstance(exc, errors.OfflineModeIsEnabled) or constants.HF_HUB_OFFLINE:
        return FetchError(
            "HF_HUB_OFFLINE is set in this environment: run 'morag models fetch' with it "
            "unset (the supervisor and server may keep it set)"
        )
    cause: BaseException = exc
    while cause.__cause__ is not None or cause.__context__ is not None:
        cause = cause.__cause__ or cause.__context__  # type: ignore[assignment]
    return FetchError(
        f"cannot download {repo_id} from {endpoint} ({type(cause).__name__}: "
        f"{str(cause)[:160]}); check the network or proxy (HTTPS_PROXY, HF_ENDPOINT), or "
        "fetch on a connected machine, 'morag models export', and 'morag models import' here"
    )


def fetch(ref: ModelRef, revision: str | None = None) -> list[Path]:
    """Download ``ref`` (and, for a pyannote pipeline, the models it names) into the
    cache; returns the snapshots. Raises FetchError (what to check) or ConfigError."""
    try:
        from huggingface_hub import constants, snapshot_download
    except ImportError:
        raise FetchError("huggingface_hub is not installed: pip install huggingface_hub") from None
    if constants.HF_HUB_OFFLINE:
        raise _explain(RuntimeError("offline"), ref.repo_id())
    repos = [ref.repo_id()]
    done: list[Path] = []
    while repos:
        repo_id = repos.pop(0)
        allow, ignore = _patterns(ref) if repo_id == ref.repo_id() else (None, None)
        try:
            path = Path(
                snapshot_download(
                    repo_id,
                    revision=revision if repo_id == ref.repo_id() else None,
                    cache_dir=hub_cache(),
                    allow_patterns=allow,
                    ignore_patterns=ignore,
                )
            )
        except Exception as exc:  # huggingface_hub and httpx raise many types; all explained
            raise _explain(exc, repo_id) from None
        done.append(path)
        if ref.kind == "pyannote" and repo_id == ref.repo_id():
            repos += pipeline_parts(path / "config.yaml")
    return done


def pipeline_parts(config: Path) -> list[str]:
    """Hugging Face repositories a pyannote pipeline's config.yaml loads by name."""
    import yaml

    if not config.is_file():
        return []
    params = (yaml.safe_load(config.read_text()) or {}).get("pipeline", {}).get("params", {})
    return [
        value
        for value in params.values()
        if isinstance(value, str) and value.count("/") == 1 and not value.startswith((".", "/"))
    ]
