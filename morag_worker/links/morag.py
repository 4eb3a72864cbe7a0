"""The link for this project's own protocol (``morag-server``, docs/protocol.md).

A thin layer over :class:`~morag_worker.client.WorkerClient`: leases with fencing tokens,
long-polls, batched result uploads, releases. The server retries a task whose lease
expires, so nothing here needs to outlive the process.
"""

from __future__ import annotations

from pathlib import Path

from loguru import logger

from morag_worker.client import (
    REGISTER_FIELDS_SINCE_0_2,
    LeaseReply,
    ServerError,
    Unreachable,
    WorkerClient,
    batch_body,
)
from morag_worker.links.base import Delivery, Fetched
from morag_worker.links.names import safe_name
from morag_worker.protocol import (
    HeartbeatRequest,
    HeartbeatResponse,
    LeaseRequest,
    RegisterRequest,
    RegisterResponse,
    ResultRequest,
    TaskSpec,
)


class MoragLink:
    gives_back = True

    def __init__(self, client: WorkerClient) -> None:
        self.client = client
        #: The server's lease period; downloads and uploads retry within it.
        self.lease_ttl_s = 30.0
        #: The server predates protocol versions (release 0.1.0): register as its workers did.
        self.legacy = False

    def register(self, body: RegisterRequest) -> RegisterResponse:
        try:
            reply = self.client.register(body, retry_for_s=0, legacy=self.legacy)
        except ServerError as exc:
            if self.legacy or not _predates_versions(exc):
                raise
            logger.info("the server predates protocol versions (0.1.0): speaking 1")
            self.legacy = True
            reply = self.client.register(body, retry_for_s=0, legacy=True)
        self.client.worker_id = reply.worker_id
        self.client.set_instance(reply.instance_id)
        self.lease_ttl_s = reply.lease_ttl_s
        logger.info(
            "registered as {} with {} (server {}, protocol {}, lease {} s)",
            reply.worker_id,
            self.client.base.rstrip("/"),
            reply.server_version or "0.1.0",
            reply.protocol_version,
            reply.lease_ttl_s,
        )
        return reply

    def health(self) -> None:
        self.client.health()

    def lease(self, want: int, task_types: list[str], wait_s: float) -> LeaseReply:
        return self.client.lease(
            LeaseRequest(max_tasks=want, wait_seconds=wait_s, task_types=task_types),
            retry_for_s=0,
        )

    def heartbeat(self, body: HeartbeatRequest, retry_for_s: float) -> HeartbeatResponse:
        return self.client.heartbeat(body, retry_for_s=retry_for_s)

    def download(self, spec: TaskSpec, inputs_dir: Path) -> Fetched:
        paths = []
        for index, file in enumerate(spec.input_files):
            dest = inputs_dir / f"{index}-{safe_name(file.name)}"
            self.client.download(file, dest, retry_for_s=self.lease_ttl_s)
            paths.append(dest)
        return Fetched(paths, spec)

    def keep_result(self, task_id: str, body: ResultRequest) -> None:
        """Nothing to keep: a result that never arrives lets the lease expire, and the
        server gives the task to a worker again."""

    def upload_results(self, batch: list[tuple[str, ResultRequest]]) -> list[Delivery]:
        """Upload until accepted or refused, retrying while a lease could still be valid."""
        try:
            reply = self.client.results(batch_body(batch), retry_for_s=self.lease_ttl_s * 2)
        except ServerError as exc:
            if exc.status in (413, 422) and len(batch) > 1:
                # one result spoils the batch: send each on its own
                return [d for item in batch for d in self.upload_results([item])]
            refused = exc.status in (413, 422)
            logger.error("result upload failed: {}", exc)
            outcome = "refused" if refused else "upload_failed"
            return [Delivery(t, outcome, exc.message if refused else "") for t, _ in batch]
        except Unreachable as exc:
            logger.error("result upload failed: {}", exc)
            return [Delivery(t, "upload_failed") for t, _ in batch]
        deliveries = []
        for answer in reply.results:
            message = ""
            if answer.error is not None:
                message = answer.error.message
                logger.warning("result refused: {}", message, task_id=answer.task_id)
                state = "lease_lost" if answer.error.code == "lease_lost" else "refused"
            else:
                state = answer.state or "unknown"
            deliveries.append(Delivery(answer.task_id, state, message))
        return deliveries

    def release(self, task_id: str, lease_token: str, reason: str, retry_for_s: float) -> None:
        self.client.release(task_id, lease_token, reason, retry_for_s=retry_for_s)

    def unregister(self) -> None:
        self.client.unregister(retry_for_s=2.0)

    def close(self) -> None:
        self.client.close()


def _predates_versions(exc: ServerError) -> bool:
    """A 0.1.0 server's refusal of the registration fields it does not know."""
    return (
        exc.status == 422
        and "Extra inputs are not permitted" in exc.message
        and any(name in exc.message for name in REGISTER_FIELDS_SINCE_0_2)
    )
