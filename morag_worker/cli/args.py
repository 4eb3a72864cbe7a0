"""The ``morag`` CLI's argument helpers: connection flags and subcommands.

The parser class and ``--version`` are :mod:`morag_worker.argparsing`'s (shared with the
server and the supervisor) and re-exported here.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

from morag_worker.argparsing import Parser, add_version

__all__ = ["Parser", "add_command", "add_version", "connection_flags"]


def connection_flags(suppress: bool) -> argparse.ArgumentParser:
    """The flags that say which server and key to use.

    Added to the top parser with the environment's defaults and to every subcommand with
    no default at all (``SUPPRESS``), so they work before or after the subcommand and a
    subcommand that does not repeat them keeps what the top parser found.
    """
    env = os.environ.get
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("connection")

    def default(value: str) -> Any:
        return argparse.SUPPRESS if suppress else value

    group.add_argument(
        "--server-url",
        default=default(env("MORAG_SERVER_URL", "http://127.0.0.1:8000")),
        help="the morag-server's base URL [MORAG_SERVER_URL; default http://127.0.0.1:8000]",
    )
    group.add_argument(
        "--api-key",
        default=default(env("MORAG_API_KEY", "")),
        help="API key (prefer --api-key-file: a key on the command line shows in ps) "
        "[MORAG_API_KEY]",
    )
    group.add_argument(
        "--api-key-file",
        default=default(env("MORAG_API_KEY_FILE", "")),
        help="file holding the API key, e.g. <data-dir>/admin.key [MORAG_API_KEY_FILE]",
    )
    return parent


Handler = Callable[[argparse.Namespace], int]


def add_command(
    sub: Any,
    name: str,
    help_text: str,
    handler: Handler,
    *,
    server: bool = True,
    json_flag: bool = True,
) -> argparse.ArgumentParser:
    """Add a subcommand that runs ``handler(args)``; ``server`` adds the connection flags,
    ``json_flag`` adds ``--json`` (print the data as JSON instead of text)."""
    parents = [connection_flags(suppress=True)] if server else []
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=help_text, description=help_text, parents=parents
    )
    if json_flag:
        parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(handler=handler)
    return parser
