"""Registering with the server: retries while it is unreachable, and worker-id conflicts.

The registration call itself is the link's (:meth:`ServerLink.register`): a morag-server
registers the worker, MoRAG's remote-jobs API only has its health checked. A
morag-server issues an instance id per registration and refuses a worker id that a live
supervisor holds (409). Three cases follow:

- the holder is this host's previous supervisor, now dead (a restart after a crash):
  its pid is gone, so the id is taken over (``replaces_instance``) and the dead
  instance's leases return to the queue at once;
- the holder is alive and the id was chosen by default (``<hostname>-<type>``): this
  supervisor registers under the next free ``<id>-2``, ``<id>-3``… and says so;
- the holder is alive and the id was configured: two supervisors must not share it, so
  this one stops with exit code 2 and a message naming the other.
"""

from __future__ import annotations

import os
import random
import socket
from collections.abc import Callable

import psutil
from loguru import logger

from morag_worker.client import ServerError, Unreachable
from morag_worker.errors import FatalStartup
from morag_worker.links.base import ServerLink
from morag_worker.protocol import RegisterRequest, RegisterResponse

__all__ = ["FatalStartup", "Registrar", "host_name", "predecessor_is_dead"]

#: While the server is unreachable, registration is retried this often (±50 % jitter).
RETRY_S = 1.0
#: Suffixes tried for a default worker id that a live supervisor holds.
MAX_SUFFIX = 9


def predecessor_is_dead(details: dict[str, object], host: str) -> bool:
    """Whether the live-looking holder of our worker id is a dead process on this host."""
    if details.get("host") != host:
        return False
    pid = details.get("pid")
    if not isinstance(pid, int) or pid <= 0 or pid == os.getpid():
        return False
    try:
        proc = psutil.Process(pid)
        command = " ".join(proc.cmdline())
    except psutil.Error:
        return True  # no such process here: it died
    # A pid reused by an unrelated program is not our predecessor either.
    return "morag" not in command and "supervisor" not in command


class Registrar:
    def __init__(
        self,
        link: ServerLink,
        body: RegisterRequest,
        explicit_id: bool,
        sleep: Callable[[float], bool],
    ) -> None:
        self.link = link
        self.body = body
        self.explicit_id = explicit_id
        #: Sleeps (handling signals); returns False when the supervisor is stopping.
        self.sleep = sleep
        self.base_id = body.worker_id

    def register(self) -> RegisterResponse | None:
        """Register, retrying while the server is unreachable; None if stopped first."""
        failures = 0
        while True:
            try:
                reply = self.link.register(self.body)
            except ServerError as exc:
                if exc.status == 409 and exc.code in ("worker_id_in_use", "worker_id_taken"):
                    self._resolve_conflict(exc)
                    continue
                self._refused(exc)
                failures += 1
                if failures == 1 or failures % 30 == 0:
                    logger.warning("registration failed, retrying: {}", exc)
            except Unreachable as exc:
                failures += 1
                if failures == 1 or failures % 30 == 0:
                    logger.warning("server unreachable ({} tries), retrying: {}", failures, exc)
            else:
                return reply
            if not self.sleep(RETRY_S * random.uniform(0.5, 1.5)):
                return None

    def _refused(self, exc: ServerError) -> None:
        if exc.status in (401, 403):
            raise FatalStartup(
                f"the server refused this worker's API key (HTTP {exc.status}: "
                f"{exc.message}); check MORAG_API_KEY or --api-key-file"
            )
        if exc.status < 500 and exc.status != 429:
            raise FatalStartup(f"registration refused: {exc.message}")

    def _resolve_conflict(self, exc: ServerError) -> None:
        details = exc.details
        holder = details.get("instance_id")
        if (
            exc.code == "worker_id_in_use"
            and isinstance(holder, str)
            and holder != self.body.replaces_instance
            and predecessor_is_dead(details, self.body.host)
        ):
            logger.info(
                "worker id {} was held by pid {} on this host, which is gone; taking it over",
                self.body.worker_id,
                details.get("pid"),
            )
            self.body = self.body.model_copy(update={"replaces_instance": holder})
            return
        if self.explicit_id:
            raise FatalStartup(exc.message)
        taken = self.body.worker_id
        suffix = 2 if taken == self.base_id else int(taken.rsplit("-", 1)[1]) + 1
        if suffix > MAX_SUFFIX:
            raise FatalStartup(f"{exc.message} (tried {self.base_id}-2 … -{MAX_SUFFIX} too)")
        new_id = f"{self.base_id}-{suffix}"
        logger.warning(
            "{}; registering as {} instead (set --worker-id to choose a stable id)",
            exc.message,
            new_id,
        )
        self.body = self.body.model_copy(update={"worker_id": new_id, "replaces_instance": ""})


def host_name() -> str:
    return socket.gethostname()
