"""The settings that choose and shape a link: ``--server-protocol``, ``--content-types``
and ``--state-dir`` (read by :mod:`morag_worker.config`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from morag_worker.errors import ConfigError

#: The protocols ``--server-protocol`` accepts: this project's own, and MoRAG's
#: ``/api/v1/remote-jobs`` (docs/morag.md).
OWN_PROTOCOL = "morag"
REMOTE_JOBS = "morag-remote-jobs"
PROTOCOLS = (OWN_PROTOCOL, REMOTE_JOBS)


def parse_protocol(raw: str) -> str:
    protocol = raw.strip().lower()
    if protocol not in PROTOCOLS:
        raise ConfigError(
            f"--server-protocol (MORAG_SERVER_PROTOCOL): expected {' or '.join(PROTOCOLS)}, "
            f"got {protocol!r}"
        )
    return protocol


def parse_content_types(raw: str, protocol: str) -> tuple[str, ...]:
    """The content types to poll for; whether this worker runs them is checked once
    its processors are loaded (:func:`morag_worker.links.select.make_link`)."""
    names = tuple(dict.fromkeys(n.strip() for n in raw.split(",") if n.strip()))
    if names and protocol != REMOTE_JOBS:
        raise ConfigError(
            "--content-types (MORAG_WORKER_CONTENT_TYPES) applies to --server-protocol "
            f"{REMOTE_JOBS}; a morag-server is served the types --pool-types routes"
        )
    bad = [n for n in names if not n.replace("_", "").replace("-", "").isalnum()]
    if bad:
        raise ConfigError(
            f"--content-types: {bad[0]!r} is not a content type; give names such as "
            "audio,video,document"
        )
    return names


def state_dir(raw: str, env: Mapping[str, str]) -> Path:
    """``--state-dir``, else systemd's ``StateDirectory=`` (its first entry), else the
    XDG state directory (``~/.local/state/morag-worker``)."""
    if raw:
        return Path(raw).expanduser()
    systemd = env.get("STATE_DIRECTORY", "").split(":")[0]
    if systemd:
        return Path(systemd)
    xdg = env.get("XDG_STATE_HOME", "")
    if xdg:
        return Path(xdg) / "morag-worker"
    try:
        return Path.home() / ".local" / "state" / "morag-worker"
    except RuntimeError:  # no home directory for this user
        return Path(".morag-worker-state").resolve()
