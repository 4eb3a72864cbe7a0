"""morag: create keys, submit files and URLs, watch tasks, fetch results, search, manage
models, run the demo.

Each group of subcommands lives in its own module with a ``register(subparsers)``
function that adds its parsers, each with ``handler=`` a function of the parsed
arguments returning the exit status; a new group is one more name in
:data:`COMMAND_MODULES`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from morag_worker.cli.api import ApiFailure
from morag_worker.cli.args import Parser, add_command, add_version, connection_flags
from morag_worker.errors import ConfigError

#: Modules under ``morag_worker.cli`` that add subcommands, in the order --help lists them.
COMMAND_MODULES = ("keys", "tasks", "info", "models", "index")

DESCRIPTION = "morag: submit files and URLs to a morag-server, follow them, search what they hold."


def _demo(args: argparse.Namespace) -> int:
    from morag_worker.cli.demo import run_demo

    return run_demo(keep=args.keep)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="morag", description=DESCRIPTION, parents=[connection_flags(False)])
    add_version(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"morag_worker.cli.{name}").register(sub)
    demo = add_command(
        sub,
        "demo",
        "run a server and a supervisor on this machine on the bundled samples",
        _demo,
        server=False,
        json_flag=False,
    )
    demo.add_argument("--keep", action="store_true", help="keep the demo's data dir")
    return parser


def _closed_pipe() -> int:
    """stdout's reader went away (``| head``): stop quietly, as Unix tools do. Pointing
    stdout at /dev/null keeps the interpreter's final flush from failing again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141  # what a shell reports for a process ended by SIGPIPE


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status: int = args.handler(args)
        sys.stdout.flush()
        return status
    except (ApiFailure, ConfigError) as exc:
        print(f"morag: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return _closed_pipe()
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
