"""The link for MoRAG's remote-jobs API (``/api/v1/remote-jobs``; docs/morag.md).

The API has no registration, lease, heartbeat, release or retry: a polled job is this
worker's for good, and a result the server does not receive is lost. This link makes up
for that on the worker's side:

- ``GET /health`` must answer 200 before the first poll (as MoRAG's own worker does), and
  a server that answers 404 on ``…/poll`` does not speak the API: exit 2;
- polls ask for one job at a time (``max_jobs=1``), once per free child, and back off
  while the answer is "no job" (all fields null); after a job the next poll is at once;
- every result is kept on disk before it is sent (:class:`~.spool.ResultSpool`); a PUT
  that fails is retried with backoff, and what is still undelivered is sent again on
  later polls and heartbeats and after a restart;
- nothing can be given back (:attr:`gives_back` is False): a drain finishes every job it
  holds, started or not.

The heartbeat thread has no lease to renew; it asks ``GET /health`` instead, which keeps
the "server answers" signal (systemd's watchdog) true while long jobs run.
"""

from __future__ import annotations

import random
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path

from loguru import logger

from morag_worker.client import HttpClient, LeaseReply, ServerError, Unreachable
from morag_worker.errors import FatalStartup
from morag_worker.links import remote_wire as wire
from morag_worker.links.base import Delivery, Fetched, TaskGone
from morag_worker.links.download import fetch_resumable
from morag_worker.links.names import fallback_name, safe_name
from morag_worker.links.remote_results import ResultCourier
from morag_worker.links.spool import ResultSpool, spool_dir
from morag_worker.protocol import (
    URL_TASK_TYPES,
    HeartbeatRequest,
    HeartbeatResponse,
    InputFile,
    RegisterRequest,
    RegisterResponse,
    ResultRequest,
    TaskSpec,
)

#: First pause after a "no job" answer; it doubles up to ``--poll-interval``, so an idle
#: worker asks a few times a minute while a burst of jobs is picked up at once.
IDLE_FIRST_S = 0.5
#: How long a download rides out a broken connection or a server restart: the server
#: cannot give the job to anyone else, so it is worth waiting for.
DOWNLOAD_RETRY_S = 300.0
#: Heartbeats (``GET /health``) come every third of this; there is no lease behind it.
HEALTH_PERIOD_S = 30.0


@dataclass(frozen=True)
class RemoteJobsSettings:
    server_url: str
    worker_id: str
    #: Content types to poll for; empty: every type this worker runs.
    content_types: tuple[str, ...]
    #: Longest pause between polls while the server has no job.
    poll_interval_s: float
    state_dir: Path


@dataclass
class _IdleBackoff:
    cap_s: float
    next_s: float = IDLE_FIRST_S
    lock: threading.Lock = field(default_factory=threading.Lock)

    def pause(self) -> float:
        with self.lock:
            pause, self.next_s = self.next_s, min(self.cap_s, self.next_s * 2)
        return min(self.cap_s, pause * random.uniform(0.8, 1.2))

    def reset(self) -> None:
        with self.lock:
            self.next_s = IDLE_FIRST_S


class RemoteJobsLink:
    gives_back = False

    def __init__(self, http: HttpClient, settings: RemoteJobsSettings, served: list[str]) -> None:
        self.http = http
        self.settings = settings
        self.served = list(served)
        self.base_url = settings.server_url.rstrip("/")
        self.spool = ResultSpool(spool_dir(settings.state_dir, self.base_url), self.base_url)
        self.courier = ResultCourier(http, self.spool)
        self.idle = _IdleBackoff(max(IDLE_FIRST_S, settings.poll_interval_s))
        #: Jobs a startup probe was handed (by a server that ignores missing parameters).
        self._stash: list[wire.PollAnswer] = []

    # ---- start ---------------------------------------------------------------------------

    def register(self, body: RegisterRequest) -> RegisterResponse:
        """Health check, protocol check, then deliver results kept from an earlier run."""
        self._probe("/health", "health")
        status, content = self._probe(f"{wire.PREFIX}/poll", "poll")
        try:
            answer = wire.read_poll_answer(content) if status == 200 else None
        except ValueError:
            answer = None
        if answer is not None:
            self._stash.append(answer)  # a job was claimed without asking: it is ours now
        kept = len(self.spool.waiting())
        self.courier.flush()
        logger.info(
            "serving MoRAG remote-jobs at {} as {} (content types {}; no leases: every job "
            "polled is finished here; {} kept results to deliver)",
            self.base_url,
            body.worker_id,
            ",".join(self.content_types(self.served)) or "none",
            kept,
        )
        return RegisterResponse(
            worker_id=body.worker_id,
            lease_ttl_s=HEALTH_PERIOD_S,
            heartbeat_interval_s=HEALTH_PERIOD_S / 3,
            max_wait_s=0.0,
            server_version="MoRAG remote-jobs",
        )

    def _probe(self, path: str, endpoint: str) -> tuple[int, bytes]:
        """One startup call. A busy or absent server is retried by the caller; a refusal
        says this is not the server to talk to (exit 2). The poll is asked without
        parameters, so it cannot claim a job: the API answers 422 for the missing ones,
        a server without the API 404."""
        try:
            response = self.http.call("GET", path, endpoint, retry_for_s=0)
            return response.status_code, response.content
        except ServerError as exc:
            status = exc.status
            if status >= 500 or status in (408, 429):
                raise
            where = f"{self.base_url} answers HTTP {status} to GET {path}"
            if status in (401, 403):
                raise FatalStartup(
                    f"{where}: set MORAG_API_KEY (--api-key-file) if the server or a proxy "
                    "in front of it needs a key"
                ) from None
            if endpoint == "poll" and status not in (404, 405, 410):
                return status, b""  # the route exists; it wants its parameters
            hint = (
                "it does not speak MoRAG's remote-jobs API (MoRAG removed it on "
                "2025-08-26); for a morag-server use --server-protocol morag"
                if endpoint == "poll"
                else "is --server-url (MORAG_API_BASE_URL) the MoRAG server's base URL?"
            )
            raise FatalStartup(f"{where}: {hint}") from None

    def health(self) -> None:
        self.http.call("GET", "/health", "health", retry_for_s=0)

    def content_types(self, task_types: list[str]) -> list[str]:
        """What to poll for: the configured content types this worker can take now."""
        wanted = self.settings.content_types or tuple(t for t in self.served if t != "noop")
        return [c for c in wanted if wire.canonical_task_type(c) in task_types]

    # ---- jobs ------------------------------------------------------------------------------

    def lease(self, want: int, task_types: list[str], wait_s: float) -> LeaseReply:
        """Up to ``want`` polls of one job each, stopping at the first "no job"."""
        types = self.content_types(task_types)
        self.courier.flush()
        tasks: list[TaskSpec] = []
        unreadable: list[tuple[str, str, str]] = []
        for _ in range(want if types else 0):
            try:
                answer = self._stash.pop(0) if self._stash else self._poll(types)
            except (Unreachable, ServerError):
                if tasks or unreadable:
                    break  # keep the jobs already claimed; the next call meets the error
                raise
            if answer is None:
                break
            self._take(answer, tasks, unreadable)
        if tasks or unreadable:
            self.idle.reset()
            return LeaseReply(tasks, unreadable)
        return LeaseReply([], [], wait_s=self.idle.pause())

    def _poll(self, types: list[str]) -> wire.PollAnswer | None:
        try:
            response = self.http.call(
                "GET", wire.poll_path(self.settings.worker_id, types), "poll", retry_for_s=0
            )
        except ServerError as exc:
            if exc.status != 404:
                raise
            raise ServerError(
                404,
                "not_found",
                f"{self.base_url} answers 404 to the poll: it no longer speaks MoRAG's "
                "remote-jobs API; polling again with backoff",
            ) from None
        try:
            return wire.read_poll_answer(response.content)
        except ValueError as exc:
            raise ServerError(response.status_code, "bad_reply", str(exc)) from None

    def _take(
        self,
        answer: wire.PollAnswer,
        tasks: list[TaskSpec],
        unreadable: list[tuple[str, str, str]],
    ) -> None:
        token = secrets.token_hex(16)
        try:
            spec, ignored = wire.job_to_task(answer, self.base_url, self.served, token)
        except wire.BadJob as exc:
            unreadable.append((answer.job_id, token, str(exc)))
            return
        if ignored:
            logger.info(
                "task_options this worker does not use, left to MoRAG: {}",
                ", ".join(ignored)[:500],
                task_id=spec.task_id,
            )
        tasks.append(spec)

    def download(self, spec: TaskSpec, inputs_dir: Path) -> Fetched:
        """Fetch the job's file (403: no longer this worker's job). A web or YouTube
        job's file holds its URL, which becomes ``parameters.url``."""
        url = spec.input_files[0].url
        part = inputs_dir / "download.part"
        try:
            got = fetch_resumable(self.http, url, part, DOWNLOAD_RETRY_S)
        except ServerError as exc:
            if exc.status == 403:
                raise TaskGone(f"the server no longer has this job for us: {exc.message}") from None
            raise
        if spec.task_type in URL_TASK_TYPES:
            try:
                return Fetched([], wire.with_url(spec, wire.url_from_file(part)))
            except wire.BadJob as exc:
                raise ServerError(200, "bad_job", str(exc)) from None
            finally:
                part.unlink(missing_ok=True)
        name = got.name or fallback_name(spec.task_id, got.content_type)
        dest = inputs_dir / f"0-{safe_name(name)}"
        part.rename(dest)
        file = InputFile(file_id=spec.task_id, name=name, size=got.size_bytes, sha256="", url=url)
        return Fetched([dest], spec.model_copy(update={"input_files": [file]}))

    # ---- results ---------------------------------------------------------------------------

    def keep_result(self, task_id: str, body: ResultRequest) -> None:
        self.courier.keep(task_id, body)

    def upload_results(self, batch: list[tuple[str, ResultRequest]]) -> list[Delivery]:
        return self.courier.upload(batch)

    # ---- the rest of the interface ---------------------------------------------------------

    def heartbeat(self, body: HeartbeatRequest, retry_for_s: float) -> HeartbeatResponse:
        """No lease to renew: ask whether the server is up, and deliver kept results."""
        self.health()
        self.courier.flush()
        return HeartbeatResponse()

    def release(self, task_id: str, lease_token: str, reason: str, retry_for_s: float) -> None:
        raise RuntimeError("MoRAG's remote-jobs API cannot take a job back")

    def unregister(self) -> None:
        """The API has no registration to end."""

    def close(self) -> None:
        self.http.close()
        left = self.spool.waiting()
        if left:
            logger.warning(
                "{} results are kept in {} and will be delivered at the next start",
                len(left),
                self.spool.root,
            )
