"""Argument parsing for all three programs: one-line errors and ``--version``.

argparse prints the whole usage before an error; for a typo in one flag that buries the
one line that matters under dozens. :class:`Parser` prints the error line first, a
"did you mean" when a known flag is close, and where the full help is. It lives outside
``cli`` because the supervisor's configuration (:mod:`morag_worker.config`) builds its
parser with it too.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from typing import NoReturn

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
