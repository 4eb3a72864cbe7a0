"""Choosing the link at startup: the only place that knows which protocol is spoken."""

from __future__ import annotations

from collections.abc import Callable

from morag_worker.client import HttpClient, WorkerClient
from morag_worker.config import SupervisorConfig
from morag_worker.errors import ConfigError
from morag_worker.links.base import ServerLink
from morag_worker.links.morag import MoragLink
from morag_worker.links.remote_jobs import RemoteJobsLink, RemoteJobsSettings
from morag_worker.links.settings import REMOTE_JOBS
from morag_worker.protocol import canonical_task_type


def make_link(
    config: SupervisorConfig,
    served: list[str],
    on_request: Callable[[str, int | str], None],
) -> ServerLink:
    """The link ``--server-protocol`` names; ``served`` are the task types this worker's
    children run (content types outside them are a configuration error)."""
    if config.server_protocol != REMOTE_JOBS:
        return MoragLink(
            WorkerClient(config.server_url, config.api_key, config.worker_id, on_request)
        )
    unknown = [c for c in config.content_types if canonical_task_type(c) not in served]
    if unknown:
        raise ConfigError(
            f"--content-types (MORAG_WORKER_CONTENT_TYPES): this worker does not run "
            f"{', '.join(unknown)}; it runs {', '.join(sorted(served))} "
            "(see --pool-types and --plugin)"
        )
    settings = RemoteJobsSettings(
        server_url=config.server_url,
        worker_id=config.worker_id,
        content_types=config.content_types,
        poll_interval_s=config.poll_interval_s,
        state_dir=config.state_dir,
    )
    try:
        return RemoteJobsLink(
            HttpClient(config.server_url, config.api_key, on_request), settings, served
        )
    except OSError as exc:
        raise ConfigError(
            f"--state-dir: cannot keep results under {config.state_dir}: "
            f"{exc.strerror or exc}; choose a writable directory (MORAG_STATE_DIR)"
        ) from None
