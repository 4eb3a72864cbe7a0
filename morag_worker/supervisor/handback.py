"""Giving tasks back: the shutdown's release steps and a task's work-dir removal.

A released task goes back to the server's queue at once with no attempt counted, so
another worker can take it; if the call fails the lease simply expires.
"""

from __future__ import annotations

import os
import shutil
import time
from typing import TYPE_CHECKING

from loguru import logger

from morag_worker.client import ServerError, Unreachable
from morag_worker.supervisor.leases import Held

if TYPE_CHECKING:
    from morag_worker.supervisor.supervisor import Supervisor


def running(sup: Supervisor) -> bool:
    """Whether a task is still in a child or on its way up to the server."""
    return any(h.stage in ("dispatched", "running", "uploading") for h in sup.book.all())


def release_unstarted(sup: Supervisor, reason: str) -> None:
    for held in sup.book.all():
        if held.stage in ("downloading", "ready"):
            release(sup, held, reason)


def release_all(sup: Supervisor, reason: str) -> None:
    for held in sup.book.all():
        if held.stage != "dropped":
            release(sup, held, reason)


def release(sup: Supervisor, held: Held, reason: str) -> None:
    held.stage = "dropped"
    try:
        sup.client.release(held.task_id, held.spec.lease_token, reason, retry_for_s=5.0)
        logger.info("released: {}", reason, task_id=held.task_id)
    except (ServerError, Unreachable) as exc:
        logger.warning("release failed (the lease will expire): {}", exc, task_id=held.task_id)
    sup.book.pop(held.task_id)
    remove_work_dir(held)


def finish_uploads(sup: Supervisor, timeout_s: float) -> None:
    end = time.monotonic() + timeout_s
    while any(h.stage == "uploading" for h in sup.book.all()) and time.monotonic() < end:
        sup.wait_for_inbox(0.1)


def remove_work_dir(held: Held) -> None:
    try:
        os.rmdir(held.work_dir)  # most work dirs are empty or never made: one system call
    except FileNotFoundError:
        pass
    except OSError:
        shutil.rmtree(held.work_dir, ignore_errors=True)
