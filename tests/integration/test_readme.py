"""The README's "Running it for real" as written: its install block checked against the
package and the Makefile, its run block executed line by line with real processes.

The README stays the source of truth: commands are read from its fenced bash blocks, and
the only changes are the ones a test on a shared machine needs (stated in SUBSTITUTIONS
and ENVIRONMENT): free ports instead of 8000 and 8080, 127.0.0.1 instead of 0.0.0.0, and a
page served on 127.0.0.1 instead of example.org (tests never reach the internet).
"""

from __future__ import annotations

import configparser
import http.server
import importlib.metadata
import os
import re
import shlex
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from morag_worker.cli.local import free_port, wait_http
from morag_worker.models.catalog import packaged_models
from morag_worker.processors.settings import ProcessorSettings

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "morag_worker" / "samples"
SERVICES = ("morag-server", "morag-supervisor")


def readme_blocks(section: str) -> list[str]:
    """The ```bash blocks of one ``## section`` of README.md."""
    text = (REPO / "README.md").read_text()
    start = text.index(f"## {section}\n")
    end = text.find("\n## ", start + 1)
    body = text[start : end if end > 0 else None]
    return re.findall(r"```bash\n(.*?)```", body, re.S)


def commands(block: str) -> list[str]:
    """Command lines of a block: continuations joined, comment lines and blanks dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [
        ln.strip() for ln in joined.splitlines() if ln.strip() and not ln.strip().startswith("#")
    ]


def _extras() -> dict[str, list[str]]:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    section = cfg["options.extras_require"]
    return {name: [r for r in section[name].splitlines() if r.strip()] for name in section}


def _expand(extra: str, extras: dict[str, list[str]]) -> list[Requirement]:
    """An extra's requirements, with morag-worker[...] self-references expanded."""
    found = []
    for line in extras[extra]:
        req = Requirement(line)
        if req.name == "morag-worker":
            for inner in req.extras:
                found += _expand(inner, extras)
        else:
            found.append(req)
    return found


def test_install_block_matches_the_package_and_the_makefile() -> None:
    install, _run = readme_blocks("Running it for real")
    lines = commands(install)
    torch = next(i for i, ln in enumerate(lines) if re.search(r"pip install torch==", ln))
    editable = next(i for i, ln in enumerate(lines) if "pip install -e" in ln)
    assert torch < editable, "the CPU torch line must come before the package install"
    makefile = (REPO / "Makefile").read_text()
    pinned = re.search(r"^TORCH \?= (\S+)$", makefile, re.M).group(1)
    assert pinned in lines[torch], f"README installs another torch than the Makefile ({pinned})"

    extras = _extras()
    named = re.search(r"-e '\.\[([\w,]+)\]'", lines[editable]).group(1).split(",")
    assert set(named) <= set(extras), f"unknown extras {set(named) - set(extras)}"
    wanted = [r for extra in named for r in _expand(extra, extras)]
    # the environment these tests run in was installed this way: every requirement holds
    for req in wanted:
        if req.marker is not None and not req.marker.evaluate():
            continue
        version = importlib.metadata.version(req.name)
        assert req.specifier.contains(version, prereleases=True), f"{req} (have {version})"
    # the default run's models come from what that line installs
    names = {r.name.lower() for r in wanted}
    defaults = {
        f"whisper:{ProcessorSettings().whisper_model}",
        f"embedding:{ProcessorSettings().embedding_model}",
    }
    packaged = {e.ref.spec: e.source.split(" ", 1)[1] for e in packaged_models()}
    for model in defaults:
        assert model in packaged, f"{model} is not installed by the README's extras"
        assert packaged[model].split(" ")[0].lower() in names, model

    apt = next(ln for ln in lines if "apt-get install" in ln).split()
    listed = re.search(r"^APT_PACKAGES := (.+?)(?<!\\)$", makefile, re.M | re.S).group(1)
    make_packages = set(listed.replace("\\\n", " ").split())
    assert {p for p in apt[3:] if not p.startswith("-")} <= make_packages


def test_quick_start_targets_exist() -> None:
    [block] = readme_blocks("Quick start")
    for line in commands(block):
        target = shlex.split(line.split("#", 1)[0])[1]
        dry = subprocess.run(["make", "-n", target], cwd=REPO, capture_output=True, text=True)
        assert dry.returncode == 0, dry.stderr
    dry = subprocess.run(
        ["make", "--no-print-directory", "-n", "demo"], cwd=REPO, capture_output=True, text=True
    )
    assert dry.stdout.strip().splitlines()[-1].endswith("/bin/morag demo")


class _Pages(http.server.SimpleHTTPRequestHandler):
    """Stands in for example.org: every path answers with the lighthouse article."""

    def translate_path(self, path: str) -> str:
        return str(SAMPLES / "lighthouse.html")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def pages() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


class Session:
    """The README's commands run as a user would in a shell, services in the background."""

    def __init__(self, cwd: Path, env: dict[str, str], server_port: int, health_port: int) -> None:
        self.cwd, self.env = cwd, env
        self.server_port, self.health_port = server_port, health_port
        self.services: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.outputs: dict[str, subprocess.CompletedProcess[str]] = {}

    def run(self, line: str) -> None:
        found = re.match(r"^export (\w+)=(.*)$", line)
        if found:
            value = self.shell(f'printf %s "{found.group(2)}"').stdout
            self.env[found.group(1)] = value
            return
        if line.split()[0] in SERVICES:
            self._start(line)
            return
        done = self.shell(line)
        assert done.returncode == 0, f"README line failed: {line}\n{done.stdout}\n{done.stderr}"
        self.outputs[line] = done

    def shell(self, line: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-c", line],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    def _start(self, line: str) -> None:
        name = line.split()[0]
        log = (self.cwd / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            ["bash", "-c", f"exec {line}"],
            cwd=self.cwd,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.services.append((name, proc))
        if name == "morag-server":
            wait_http(f"http://127.0.0.1:{self.server_port}/health", 120, proc)
        else:
            wait_http(f"http://127.0.0.1:{self.health_port}/ready", 180, proc)

    def stop(self) -> dict[str, int]:
        codes = {}
        for name, proc in reversed(self.services):  # the worker first, then the server
            proc.send_signal(signal.SIGTERM)
            try:
                codes[name] = proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                codes[name] = proc.wait(timeout=10)
        return codes


#: What the test changes in the README's lines: ports, the listening address, example.org.
def substitute(line: str, server_port: int, pages_url: str) -> str:
    line = line.replace("0.0.0.0", "127.0.0.1")
    line = re.sub(r"(?<=127\.0\.0\.1:)8000\b", str(server_port), line)
    line = re.sub(r"--port 8000\b", f"--port {server_port}", line)
    return line.replace("https://example.org", pages_url)


@pytest.mark.slow
def test_running_it_for_real_as_written(tmp_path: Path, pages: str) -> None:
    _install, block = readme_blocks("Running it for real")
    cwd = tmp_path / "clone"
    (cwd / "morag_worker").mkdir(parents=True)
    (cwd / "morag_worker" / "samples").symlink_to(SAMPLES)  # the paths a clone has
    server_port, health_port = free_port(), free_port()
    # ENVIRONMENT: this tree's programs first on PATH; the supervisor's health port free
    # (the README leaves it at 8080); pages on 127.0.0.1 allowed (example.org's stand-in).
    env = {k: v for k, v in os.environ.items() if not k.startswith("MORAG_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    env.update({"MORAG_HEALTH_PORT": str(health_port), "MORAG_ALLOW_PRIVATE_URLS": "true"})
    session = Session(cwd, env, server_port, health_port)
    lines = [substitute(line, server_port, pages) for line in commands(block)]
    try:
        for line in lines:
            session.run(line)
        audio = next(o for line, o in session.outputs.items() if "--type audio" in line).stdout
        assert "SPEAKER_1" in audio and "Good morning" in audio
        web = next(o for line, o in session.outputs.items() if "--type web" in line).stdout
        assert "Lighthouse" in web
        tasks = next(o for line, o in session.outputs.items() if line == "morag tasks").stdout
        assert tasks.count(" completed ") == 2
        workers = next(o for line, o in session.outputs.items() if line == "morag workers").stdout
        assert len(workers.splitlines()) == 2 and " cpu " in workers
        search = next(line for line in lines if line.startswith("morag search"))
        # indexing runs after completion: the README's search line again until it caught up
        deadline = time.monotonic() + 90

        def first_hit() -> str:
            shown = session.shell(search).stdout.splitlines()
            return shown[0] if shown else ""

        while "two-voices.ogg" not in first_hit():  # the audio answers "how much did sales grow"
            assert time.monotonic() < deadline, "the audio never became searchable"
            time.sleep(1)
        for name in ("alice.key", "worker.key", "pool.key"):
            assert stat.S_IMODE((cwd / name).stat().st_mode) == 0o600, name
    finally:
        codes = session.stop()
    assert codes == {"morag-supervisor": 0, "morag-server": 0}
