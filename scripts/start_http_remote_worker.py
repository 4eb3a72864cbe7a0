#!/usr/bin/env python3
"""The seed's worker launcher, kept as a thin wrapper over ``morag-supervisor``.

    python scripts/start_http_remote_worker.py --server-url URL --api-key KEY \\
        [--worker-type gpu|cpu] [--poll-interval S] [--max-concurrent N] \\
        [-- MORAG-SUPERVISOR FLAGS …]

It accepts exactly the seed's flags and hands them to ``morag-supervisor`` (see
:data:`SEED_FLAGS`); anything after ``--`` goes to the supervisor unchanged. Any other
flag is refused with one line naming it, since a silently ignored flag would run a
worker the operator did not ask for.

Besides the mapping it does three things the seed's users rely on:

- variables of a ``.env`` in the working directory (or ``-- --env-file FILE``) are put
  in the environment, so that settings meant for the children (``HF_HOME``,
  ``OMP_NUM_THREADS``, ``PYTORCH_DISABLE_NNPACK`` …) reach them; the environment wins;
- the seed's ``CUDA_VISIBLE_DEVICES`` ("GPU device ID") becomes ``MORAG_GPUS`` unless
  that or ``--gpus`` is given: the supervisor sets ``CUDA_VISIBLE_DEVICES`` per child;
- ``--api-key`` reaches the supervisor as ``MORAG_API_KEY`` in its environment, not on
  its command line, where ``ps`` would show it to every user of the host.

Then it replaces itself with the supervisor (``exec``): signals (SIGTERM drains, SIGHUP
recycles children) and the exit status are the supervisor's own. The supervisor runs on
Linux only; elsewhere this says so and points at the containers.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import sys
from pathlib import Path

PROG = "start_http_remote_worker.py"
REPO = Path(__file__).resolve().parent.parent

#: The seed's flags → (what the supervisor gets, metavar, help). The supervisor gets a
#: flag of its own, or for the key a variable, which keeps it off its command line.
SEED_FLAGS = {
    "--server-url": ("--server-url", "URL", "the server's base URL [MORAG_SERVER_URL]"),
    "--api-key": (
        "MORAG_API_KEY",
        "KEY",
        "worker API key [MORAG_API_KEY]; --api-key-file after -- keeps it out of ps",
    ),
    "--worker-type": ("--worker-type", "gpu|cpu", "gpu or cpu [WORKER_TYPE]"),
    "--poll-interval": (
        "--poll-interval",
        "SECONDS",
        "longest a lease long-poll waits [POLL_INTERVAL]",
    ),
    "--max-concurrent": (
        "--max-concurrent",
        "N",
        "CPU children when no GPU is used [MAX_CONCURRENT_TASKS]",
    ),
}
EPILOG = """\
Everything after -- goes to morag-supervisor unchanged, e.g.
  %(prog)s --server-url http://server:8000 -- --gpus 0,1 --api-key-file ./worker.key
morag-supervisor --help lists its flags; a .env in the working directory is read too.
"""


class SeedParser(argparse.ArgumentParser):
    """argparse with the one-line error an operator needs, not the whole usage."""

    def error(self, message: str) -> None:  # type: ignore[override]
        unknown = re.match(r"unrecognized arguments: (\S+)", message)
        if unknown:
            message = (
                f"unknown flag {unknown.group(1)}: this launcher takes the seed's flags "
                f"({', '.join(SEED_FLAGS)}); put morag-supervisor flags after -- "
                f"(e.g. -- --gpus 0,1) or run morag-supervisor directly"
            )
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> SeedParser:
    parser = SeedParser(
        prog=PROG,
        description="Start a MoRAG worker (morag-supervisor) with the seed's flags.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    for flag, (_, metavar, help_text) in SEED_FLAGS.items():
        parser.add_argument(flag, metavar=metavar, help=help_text)
    return parser


def supervisor_command(argv: list[str]) -> list[str]:
    """``python -m morag_worker.cli.supervisor`` with an interpreter that has the package.

    Run with a Python lacking it, the launcher starts over with the clone's ``.venv``
    (what ``make install`` creates) rather than fail a seed user who typed ``python``.
    """
    if all(importlib.util.find_spec(name) for name in ("morag_worker", "dotenv")):
        return [sys.executable, "-m", "morag_worker.cli.supervisor"]
    venv = REPO / ".venv"
    if (venv / "bin" / "python").exists() and Path(sys.prefix).resolve() != venv.resolve():
        os.execv(str(venv / "bin" / "python"), [str(venv / "bin" / "python"), __file__, *argv])
    raise SystemExit(
        f"{PROG}: morag-worker is not installed for {sys.executable}; run `make install` in "
        f"{REPO} (this launcher then uses its .venv) or `pip install -e '{REPO}[all]'`"
    )


def env_file_of(passthrough: list[str]) -> str:
    """The dotenv file the supervisor will read: ``--env-file`` after ``--``, else ``.env``."""
    for i, arg in enumerate(passthrough):
        if arg == "--env-file" and i + 1 < len(passthrough):
            return passthrough[i + 1]
        if arg.startswith("--env-file="):
            return arg.split("=", 1)[1]
    return ".env"


def seed_gpus(env: dict[str, str], passthrough: list[str]) -> str | None:
    """``MORAG_GPUS`` from the seed's ``CUDA_VISIBLE_DEVICES``, when nothing newer is set."""
    cuda = env.get("CUDA_VISIBLE_DEVICES", "").strip()
    given = env.get("MORAG_GPUS") or any(a.split("=")[0] == "--gpus" for a in passthrough)
    if not cuda or given:
        return None
    if not re.fullmatch(r"\d+(,\d+)*", cuda):
        raise SystemExit(
            f"{PROG}: CUDA_VISIBLE_DEVICES={cuda!r}: the supervisor picks GPUs by index "
            f"(nvidia-smi's numbers); set MORAG_GPUS=0,1 (or all) instead"
        )
    return cuda


def build_environment(args: argparse.Namespace, passthrough: list[str]) -> dict[str, str]:
    from dotenv import dotenv_values

    env_file = env_file_of(passthrough)
    from_file = dotenv_values(env_file) if Path(env_file).is_file() else {}
    env = {k: v for k, v in from_file.items() if v is not None}
    env.update(os.environ)
    if args.api_key is not None:
        env["MORAG_API_KEY"] = args.api_key
    gpus = seed_gpus(env, passthrough)
    if gpus is not None:
        env["MORAG_GPUS"] = gpus
    return env


def split_at_double_dash(argv: list[str]) -> tuple[list[str], list[str]]:
    """The launcher's own arguments, and those after ``--`` for the supervisor."""
    if "--" not in argv:
        return argv, []
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1 :]


def main(argv: list[str]) -> int:
    own, passthrough = split_at_double_dash(argv)
    args = build_parser().parse_args(own)
    if not sys.platform.startswith("linux"):
        raise SystemExit(
            f"{PROG}: morag-supervisor runs on Linux only (it pins children to GPUs and cores "
            f"with Linux APIs); use Docker (docker compose -f docker-compose.workers.yml up) "
            f"or WSL2"
        )
    command = supervisor_command(argv)
    flags: list[str] = []
    for flag, (target, _, _) in SEED_FLAGS.items():
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is not None and target.startswith("--"):
            flags += [target, value]
    env = build_environment(args, passthrough)
    os.execve(command[0], [*command, *flags, *passthrough], env)
    return 0  # not reached: execve replaces this process


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
