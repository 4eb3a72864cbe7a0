"""Giving tasks back to the server, and removing a task's work dir.

A released task goes back to the server's queue at once with no attempt counted, so
another worker can take it; if the call fails the lease simply expires.
"""

from __future__ import annotations

import os
import shutil

from loguru import logger

from morag_worker.client import ServerError, Unreachable, WorkerClient
from morag_worker.supervisor.book import Held, LeaseBook

#: How long a release call may keep retrying: short, the lease expiring is the fallback.
RELEASE_RETRY_S = 5.0


class Handback:
    def __init__(self, client: WorkerClient, book: LeaseBook) -> None:
        self.client = client
        self.book = book

    def release(self, held: Held, reason: str) -> None:
        self.book.drop(held)
        try:
            self.client.release(
                held.task_id, held.spec.lease_token, reason, retry_for_s=RELEASE_RETRY_S
            )
            logger.info("released: {}", reason, task_id=held.task_id)
        except (ServerError, Unreachable) as exc:
            logger.warning("release failed (the lease will expire): {}", exc, task_id=held.task_id)
        self.remove_work_dir(held)

    def release_unstarted(self, reason: str) -> None:
        for held in self.book.all():
            if held.stage in ("downloading", "ready"):
                self.release(held, reason)

    def release_all(self, reason: str) -> None:
        for held in self.book.all():
            if held.stage != "dropped":
                self.release(held, reason)

    def running(self) -> bool:
        """Whether a task is still in a child or on its way up to the server."""
        return self.book.count("dispatched", "running", "uploading") > 0

    def uploading(self) -> bool:
        return self.book.count("uploading") > 0

    @staticmethod
    def remove_work_dir(held: Held) -> None:
        try:
            os.rmdir(held.work_dir)  # most work dirs are empty or never made: one system call
        except FileNotFoundError:
            pass
        except OSError:
            shutil.rmtree(held.work_dir, ignore_errors=True)
