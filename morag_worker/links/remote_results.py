"""Delivering results to MoRAG's remote-jobs API so that none is lost.

The API takes a result once (``PUT /api/v1/remote-jobs/{id}/result``) and retries
nothing. Each result is kept on disk (:class:`~.spool.ResultSpool`) the moment it is
queued, then sent; a PUT that fails is retried with backoff for a while, then the result
waits on disk and is sent again whenever the link next talks to the server (polls,
health checks) and after a restart. A result is forgotten only once the server has
answered for it: accepted, refused (a body it will never take), or its job unknown.

A result is sent by one thread at a time: the uploader owns what it was handed, and a
flush only takes results nobody owns, so no result is sent twice at once.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from loguru import logger

from morag_worker.client import HttpClient, ServerError, Unreachable
from morag_worker.links import remote_wire as wire
from morag_worker.links.base import Delivery
from morag_worker.links.spool import ResultSpool
from morag_worker.protocol import ResultRequest

#: How long one upload keeps retrying before the result waits on disk for later: long
#: enough for a server restart, short enough that a drain is not held up.
PUT_RETRY_S = 30.0
#: Answers that mean "try again later"; every other refusal is final.
_TRANSIENT = frozenset({408, 425, 429})


class ResultCourier:
    def __init__(self, http: HttpClient, spool: ResultSpool) -> None:
        self.http = http
        self.spool = spool
        self._lock = threading.Lock()
        #: Jobs whose result a thread is sending (or the uploader is about to).
        self._busy: set[str] = set()

    def keep(self, job_id: str, body: ResultRequest) -> None:
        """Write the result to disk before it is queued; never raises."""
        with self._lock:
            self._busy.add(job_id)
        try:
            self.spool.put(job_id, wire.result_body(body))
        except (OSError, ValueError) as exc:
            logger.error(
                "cannot keep the result on disk ({}): it is lost if it cannot be sent "
                "before this worker stops",
                exc,
                task_id=job_id,
            )

    def upload(self, batch: list[tuple[str, ResultRequest]]) -> list[Delivery]:
        """Send results the uploader was handed (and owns since :meth:`keep`)."""
        done = []
        for job_id, body in batch:
            try:
                done.append(self._send(job_id, wire.result_body(body), PUT_RETRY_S))
            finally:
                with self._lock:
                    self._busy.discard(job_id)
        return done

    def flush(self) -> None:
        """Send kept results whose retry is due (from this run or an earlier one) and
        that no thread is sending; stop at the first the server cannot take now. Called
        from the lease and heartbeat threads: a failing state dir is logged, not raised."""
        try:
            self._flush()
        except OSError as exc:
            logger.error("kept results cannot be read or removed: {}", exc)

    def _flush(self) -> None:
        for job_id in self.spool.due(time.monotonic()):
            with self._lock:
                if job_id in self._busy:
                    continue
                self._busy.add(job_id)
            try:
                body = self.spool.body(job_id)
                delivery = None if body is None else self._send(job_id, body, retry_for_s=0)
            finally:
                with self._lock:
                    self._busy.discard(job_id)
            if delivery is None:
                continue
            if delivery.outcome == "spooled":
                return
            logger.info("kept result sent: {}", delivery.outcome, task_id=job_id)
            if delivery.outcome == "refused" and body is not None and body.get("success"):
                # No task waits for this answer any more: tell the server the job failed
                # (sent with the next flush), or it stays "processing" for ever.
                message = f"invalid_result: the server refused the result: {delivery.message}"
                self.spool.put(job_id, {"success": False, "error_message": message[:8192]})

    def _send(self, job_id: str, body: dict[str, Any], retry_for_s: float) -> Delivery:
        """PUT one result; forget the kept copy once the server has answered for it."""
        try:
            response = self.http.call(
                "PUT", wire.result_path(job_id), "result", json=body, retry_for_s=retry_for_s
            )
        except ServerError as exc:
            if exc.status >= 500 or exc.status in _TRANSIENT:
                return self._later(job_id, str(exc))
            self.spool.remove(job_id)
            if exc.status == 404:
                logger.warning("the server no longer knows this job: {}", exc, task_id=job_id)
                return Delivery(job_id, "lease_lost", exc.message)
            logger.error("the server refused the result: {}", exc, task_id=job_id)
            return Delivery(job_id, "refused", exc.message)
        except Unreachable as exc:
            return self._later(job_id, str(exc))
        self.spool.remove(job_id)
        try:
            state = str(response.json().get("status") or "delivered")
        except (ValueError, AttributeError):
            state = "delivered"
        return Delivery(job_id, state)

    def _later(self, job_id: str, why: str) -> Delivery:
        self.spool.failed(job_id, time.monotonic())
        logger.warning(
            "result not delivered ({}); kept in {} and sent again when the server answers",
            why,
            self.spool.root,
            task_id=job_id,
        )
        return Delivery(job_id, "spooled", why)
