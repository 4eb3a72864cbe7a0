"""Giving tasks back to the server, and removing a task's work dir.

A released task goes back to the server's queue at once with no attempt counted, so
another worker can take it; if the call fails the lease simply expires. A server that
cannot take tasks back (``link.gives_back`` false) gets nothing released: its tasks are
finished here, or reported failed, and every method below says which tasks that leaves.
"""

from __future__ import annotations

import os
import shutil

from loguru import logger

from morag_worker.client import ServerError, Unreachable
from morag_worker.links.base import ServerLink
from morag_worker.protocol import TaskError
from morag_worker.supervisor.book import Held, LeaseBook

#: How long a release call may keep retrying: short, the lease expiring is the fallback.
RELEASE_RETRY_S = 5.0
#: Stages of a task that has not reached a child yet.
UNSTARTED = ("downloading", "ready")


class Handback:
    def __init__(self, link: ServerLink, book: LeaseBook) -> None:
        self.link = link
        self.book = book
        #: Whether tasks can be given back at all; without it they must be finished here.
        self.gives_back = link.gives_back

    def release(self, held: Held, reason: str) -> bool:
        """Give the task back; False (and nothing done) when the server cannot take it."""
        if not self.gives_back:
            return False
        self.book.drop(held)
        try:
            self.link.release(
                held.task_id, held.spec.lease_token, reason, retry_for_s=RELEASE_RETRY_S
            )
            logger.info("released: {}", reason, task_id=held.task_id)
        except (ServerError, Unreachable) as exc:
            logger.warning("release failed (the lease will expire): {}", exc, task_id=held.task_id)
        self.remove_work_dir(held)
        return True

    def release_unstarted(self, reason: str) -> None:
        for held in self.book.all():
            if held.stage in UNSTARTED:
                self.release(held, reason)

    def release_all(self, reason: str) -> list[Held]:
        """Release every task held; returns those that could not be given back and have
        no answer on its way to the server yet (the caller reports them failed, with
        :meth:`unfinished`)."""
        kept = []
        for held in self.book.all():
            if held.stage == "dropped" or self.release(held, reason):
                continue
            if held.stage != "uploading":  # an answer on its way is kept until delivered
                kept.append(held)
        return kept

    @staticmethod
    def unfinished(drain_timeout_s: float) -> TaskError:
        """The failure reported for a task that could not be given back and did not
        finish before the stop (nobody else would ever run it)."""
        return TaskError.of(
            "stopped",
            f"the worker stopped before the task finished (--drain-timeout {drain_timeout_s:g} s)",
            retryable=True,
        )

    def running(self) -> bool:
        """Whether a task is still in a child or on its way up to the server, or, when
        tasks cannot be given back, still waiting to start (it must run first)."""
        stages = ["dispatched", "running", "uploading"]
        if not self.gives_back:
            stages += UNSTARTED
        return self.book.count(*stages) > 0

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
