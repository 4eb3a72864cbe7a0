"""What every ``morag`` subcommand that talks to the server needs."""

from __future__ import annotations

import argparse
from urllib.parse import quote

from morag_worker.cli.api import Api, read_key


def connect(args: argparse.Namespace) -> Api:
    """An API client from the connection flags (``--server-url``, ``--api-key[-file]``)."""
    return Api(args.server_url, read_key(args.api_key, args.api_key_file))


def seg(value: str) -> str:
    """``value`` as one URL path segment: an id typed by a person cannot reach another route."""
    return quote(value.strip(), safe="")
