"""The one interface between the supervisor and a server: :class:`ServerLink`.

The supervisor's collaborators (registration, the lease and heartbeat threads, the
transfers, the hand-back) talk to the server only through a link, so none of them knows
which protocol is spoken. Two links exist: :class:`~morag_worker.links.morag.MoragLink`
(this project's own protocol: leases, fencing, retries on the server) and
:class:`~morag_worker.links.remote_jobs.RemoteJobsLink` (MoRAG's ``/api/v1/remote-jobs``:
none of those). What a protocol lacks, its link makes up for on the worker's side, and
says so through :attr:`ServerLink.gives_back`.

Errors: a link raises :class:`~morag_worker.client.Unreachable` while the server cannot
be reached, :class:`~morag_worker.client.ServerError` when it refuses a call,
:class:`~morag_worker.errors.FatalStartup` when the supervisor must not go on (exit 2),
and :class:`TaskGone` when a task is no longer this worker's to finish.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from morag_worker.client import LeaseReply
from morag_worker.protocol import (
    HeartbeatRequest,
    HeartbeatResponse,
    RegisterRequest,
    RegisterResponse,
    ResultRequest,
    TaskSpec,
)


class TaskGone(Exception):
    """The server no longer has this task for this worker (taken back, finished by
    someone else): drop it without reporting a result."""


@dataclass(frozen=True)
class Fetched:
    """A task's inputs, downloaded: the files in order, and the task as it now reads
    (a link may learn input names or parameters only from the download)."""

    paths: list[Path]
    spec: TaskSpec


@dataclass(frozen=True)
class Delivery:
    """What became of one uploaded result: the task's new state on the server
    (``completed``, ``failed`` …), ``lease_lost``, ``refused`` (with the server's
    reason), ``upload_failed``, or ``spooled`` (kept on disk, delivered later)."""

    task_id: str
    outcome: str
    message: str = ""


class ServerLink(Protocol):
    """A server as the supervisor uses it. Every method may be called from any of the
    supervisor's threads; implementations are thread-safe."""

    #: Whether the server takes a task back unstarted (release). Without it every task
    #: leased must be finished or failed here: the drain runs them too.
    gives_back: bool

    def register(self, body: RegisterRequest) -> RegisterResponse:
        """One attempt to announce this worker; the caller retries while unreachable."""
        ...

    def health(self) -> None:
        """Return when the server answers its health check; raise otherwise."""
        ...

    def lease(self, want: int, task_types: list[str], wait_s: float) -> LeaseReply:
        """Take up to ``want`` tasks of ``task_types``, waiting up to ``wait_s`` for one
        where the server can wait."""
        ...

    def heartbeat(self, body: HeartbeatRequest, retry_for_s: float) -> HeartbeatResponse:
        """Renew the held leases (a server without leases is only asked whether it is up)."""
        ...

    def download(self, spec: TaskSpec, inputs_dir: Path) -> Fetched:
        """Fetch the task's inputs into ``inputs_dir``."""
        ...

    def keep_result(self, task_id: str, body: ResultRequest) -> None:
        """Called, in the caller's thread, as a result is queued for upload: a link whose
        server cannot have the task done again writes it where it survives a restart.
        Never raises."""
        ...

    def upload_results(self, batch: list[tuple[str, ResultRequest]]) -> list[Delivery]:
        """Upload results; one :class:`Delivery` per task in ``batch``."""
        ...

    def release(self, task_id: str, lease_token: str, reason: str, retry_for_s: float) -> None:
        """Give an unstarted task back (only called when :attr:`gives_back`)."""
        ...

    def unregister(self) -> None:
        """Say goodbye at shutdown, if the protocol has a way to."""
        ...

    def close(self) -> None:
        """Stop every call in progress from retrying and free the connections."""
        ...
