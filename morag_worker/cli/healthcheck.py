"""``morag-healthcheck``: a container's HEALTHCHECK, whichever program the container runs.

One image runs either ``morag-server`` (``/health`` on its API port, 8000 by default) or
``morag-supervisor`` (``/health`` on its health port, 8080 by default). This finds the
program among the container's processes (``/proc``), takes the address and port that
process was given (its flags, else its own environment, else the default) and asks that
program's ``/health``. Exit status 0: healthy; 1: not (Docker's convention), with one
line on stderr saying why.

Standard library only, and nothing of the package imported: Docker runs this every
interval, and it must answer within the check's timeout even on a loaded host.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

#: Under Docker's usual 5 s check timeout, leaving time to start Python.
REQUEST_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class Program:
    """Where one of our programs serves ``/health``, and how its flags say so."""

    name: str
    module: str
    host_flag: str
    host_env: str
    port_flag: str
    port_env: str
    default_port: int


PROGRAMS = (
    Program(
        "morag-server",
        "morag_worker.cli.server",
        "--host",
        "MORAG_SERVER_HOST",
        "--port",
        "MORAG_SERVER_PORT",
        8000,
    ),
    Program(
        "morag-supervisor",
        "morag_worker.cli.supervisor",
        "--health-host",
        "MORAG_HEALTH_HOST",
        "--health-port",
        "MORAG_HEALTH_PORT",
        8080,
    ),
)
#: Bind addresses meaning "every interface": reach them on loopback.
ANY_ADDRESS = {"", "0.0.0.0", "::", "[::]"}


def identify(argv: list[str]) -> Program | None:
    """The program a command line runs: a console script by name, or ``python -m``."""
    for program in PROGRAMS:
        if any(Path(arg).name == program.name for arg in argv[:2]):
            return program
        if any(a == "-m" and b == program.module for a, b in itertools.pairwise(argv)):
            return program
    return None


def flag_value(argv: list[str], flag: str) -> str | None:
    """The value given to ``flag`` (``--flag V`` or ``--flag=V``; the last one wins)."""
    value = None
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(flag + "="):
            value = arg.split("=", 1)[1]
    return value


def health_url(program: Program, argv: list[str], environ: dict[str, str]) -> str:
    host = flag_value(argv, program.host_flag) or environ.get(program.host_env, "")
    port = flag_value(argv, program.port_flag) or environ.get(program.port_env, "")
    host = "127.0.0.1" if host in ANY_ADDRESS else host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port or program.default_port}/health"


def running(proc: Path = Path("/proc")) -> list[tuple[int, Program, str]]:
    """``(pid, program, health URL)`` of each of our programs running here."""
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
            program = identify(argv)
            if program is None:
                continue
            raw_env = (entry / "environ").read_bytes().decode(errors="replace").split("\0")
        except OSError:  # gone meanwhile, or another user's
            continue
        environ = dict(item.split("=", 1) for item in raw_env if "=" in item)
        found.append((int(entry.name), program, health_url(program, argv, environ)))
    return found


def check(url: str) -> str | None:
    """None when ``url`` answers 200, else why not."""
    try:
        with urllib.request.urlopen(url, timeout=REQUEST_TIMEOUT_S) as reply:
            return None if reply.status == 200 else f"answered {reply.status}"
    except urllib.error.HTTPError as exc:
        return f"answered {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return f"did not answer ({getattr(exc, 'reason', exc)})"


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(
        prog="morag-healthcheck",
        description="Exit 0 when the morag-server or morag-supervisor running here answers "
        "/health on the address it was given, else 1 with the reason.",
    ).parse_args(argv)
    programs = running()
    if not programs:
        names = " or ".join(p.name for p in PROGRAMS)
        print(f"morag-healthcheck: no {names} process runs here", file=sys.stderr)
        return 1
    status = 0
    for pid, program, url in programs:
        problem = check(url)
        if problem:
            print(f"morag-healthcheck: {program.name} (pid {pid}) {url} {problem}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
