"""Argument parsing shared by the three programs: short errors, versions, connection flags.

argparse prints the whole usage before an error; for a typo in one flag that buries the
one line that matters under dozens. :class:`Parser` prints the error line first, a
"did you mean" when a known flag is close, and where the full help is.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from morag_worker import __version__

_UNRECOGNIZED = re.compile(r"unrecognized arguments: (.+)")


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (plus a hint), exit status 2."""

    def parse_known_args(  # type: ignore[override]
        self, args: list[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        # argparse reports a missing required flag before an unknown one, so a typo in a
        # required flag read "--type is required". A leaf command checks its flags first.
        self._refuse_unknown_flags(sys.argv[1:] if args is None else list(args))
        return super().parse_known_args(args, namespace)

    def _subcommands(self) -> set[str]:
        return {
            name
            for action in self._actions
            if isinstance(action, argparse._SubParsersAction)
            for name in action.choices
        }

    def _refuse_unknown_flags(self, args: list[str]) -> None:
        """Flags up to the subcommand (if any) must be this parser's own."""
        known = [s for action in self._actions for s in action.option_strings]
        subcommands = self._subcommands()
        for token in args:
            if token == "--" or token in subcommands:
                return
            flag = token.split("=", 1)[0]
            if not flag.startswith("--") or len(flag) < 3:
                continue  # values, negative numbers and short options are argparse's to judge
            if not any(option.startswith(flag) for option in known):
                self.error(f"unrecognized arguments: {token}")

    def error(self, message: str) -> NoReturn:
        hint = self._suggestion(message)
        sys.stderr.write(f"{self.prog}: error: {message}{hint}\n")
        sys.stderr.write(f"(see '{self.prog} --help')\n")
        sys.exit(2)

    def _suggestion(self, message: str) -> str:
        found = _UNRECOGNIZED.search(message)
        if not found:
            return ""
        known = [s for action in self._all_actions() for s in action.option_strings]
        for word in found.group(1).split():
            flag = word.split("=", 1)[0]
            if flag.startswith("--"):
                close = difflib.get_close_matches(flag, known, n=1, cutoff=0.6)
                if close:
                    return f" (did you mean {close[0]}?)"
        return ""

    def _all_actions(self) -> list[argparse.Action]:
        """This parser's actions and those of every subcommand below it: an unknown flag
        is reported by the top parser even when it belongs to a subcommand."""
        actions = list(self._actions)
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    actions += sub._all_actions() if isinstance(sub, Parser) else sub._actions
        return actions


def add_version(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--version", action="version", version=f"{parser.prog} {__version__} (morag-worker)"
    )


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
