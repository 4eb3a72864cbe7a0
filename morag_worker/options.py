"""The one way settings are read: a flag wins over its environment variables, which win
over a ``.env`` file, which wins over the default.

The supervisor (:mod:`morag_worker.config`), the processors' settings
(:mod:`morag_worker.settings`) and the server (:mod:`morag_worker.cli.server`) declare
their settings as :class:`Option` tables and read them through :func:`value`; booleans
everywhere go through :func:`parse_bool`. A bad value is a :class:`ValueError` naming the
flag or variable it came from, which each program turns into one line and exit code 2.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", ""})


def parse_bool(raw: object, name: str) -> bool:
    """``true``/``false`` and their usual spellings; anything else is an error naming
    ``name`` (a flag or a variable)."""
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise ValueError(f"{name}: expected true or false, got {raw!r}")


@dataclass(frozen=True)
class Option:
    """One setting: its flag, environment variables (in order of precedence), default
    (as text, as it would be written in the environment), help and type."""

    flag: str
    envs: tuple[str, ...]
    default: str
    help: str
    kind: type = str
    #: The attribute the parsed flag lands on (default: the flag's name).
    dest: str = ""

    @property
    def name(self) -> str:
        return self.dest or self.flag.lstrip("-").replace("-", "_")

    def describe(self) -> str:
        where = "/".join(self.envs)
        shown = self.default if self.default != "" else "none"
        return f"{self.help} [{where}; default {shown}]" if where else self.help


def add_options(parser: Any, options: Iterable[Option]) -> None:
    """Declare each option on an argparse parser or group; values stay ``None`` unless
    given, so :func:`value` can tell a flag from the environment."""
    for option in options:
        if option.kind is bool:
            parser.add_argument(
                option.flag,
                dest=option.name,
                action="store_true",
                default=None,
                help=option.describe(),
            )
        else:
            parser.add_argument(option.flag, dest=option.name, default=None, help=option.describe())


def raw_value(args: argparse.Namespace, env: Mapping[str, str], option: Option) -> str:
    """The option's text: the flag's, else the first non-empty variable's, else the default."""
    given = getattr(args, option.name, None)
    if given is not None:
        return "true" if given is True else str(given)
    for name in option.envs:
        if env.get(name, "") != "":
            return str(env[name])
    return option.default


def value(args: argparse.Namespace, env: Mapping[str, str], option: Option) -> Any:
    """The option's value, converted to its type; ValueError names where it came from."""
    raw = raw_value(args, env, option)
    source = option.flag if getattr(args, option.name, None) is not None else _source(env, option)
    if option.kind is bool:
        return parse_bool(raw, source)
    if option.kind in (int, float):
        try:
            return option.kind(raw)
        except ValueError:
            word = "an integer" if option.kind is int else "a number"
            raise ValueError(f"{source}: expected {word}, got {raw!r}") from None
    return raw


def _source(env: Mapping[str, str], option: Option) -> str:
    for name in option.envs:
        if env.get(name, "") != "":
            return name
    return option.flag


def merged_environment(env_file: str, environ: Mapping[str, str]) -> dict[str, str]:
    """The process environment over the dotenv file's values (the environment wins)."""
    merged = (
        {k: v for k, v in dotenv_values(env_file).items() if v is not None}
        if env_file and Path(env_file).is_file()
        else {}
    )
    merged.update(environ)
    return merged
