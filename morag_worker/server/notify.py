"""Waking long-polling lease requests when work may have become available.

Each waiting long-poll registers what it can take (its task types, and its user unless
its key is a pool key). A notification names the task it is about (type and user) when
there is one: only the waiters that could claim that task are woken, so a fleet of
workers serving other types or other users sleeps on. A notification without a task
(the reaper returned expired leases, a task was released) wakes every waiter.

With PostgreSQL, several server replicas share the queue: every notification is also
sent as ``NOTIFY`` on one channel with the task's type and user as payload, and each
replica runs a listener thread (``LISTEN``) that wakes its own matching waiters, so a
task submitted to one replica reaches a worker long-polling another at once. A lost
notification costs latency, never a task: waiters also wake when the next delayed task
is due and when their wait ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from loguru import logger

from morag_worker.server.db import Database

CHANNEL = "morag_tasks"
#: Back-off before reconnecting a listener whose connection dropped.
LISTEN_RETRY_S = 2.0


@dataclass(frozen=True)
class Interest:
    """What a waiting long-poll can claim."""

    task_types: frozenset[str]
    #: None: every user's tasks (a pool key).
    user_id: str | None

    def matches(self, task_type: str, user_id: str) -> bool:
        return task_type in self.task_types and (self.user_id is None or self.user_id == user_id)


@dataclass(eq=False)
class _Waiter:
    interest: Interest
    woken: asyncio.Event = field(default_factory=asyncio.Event)


class Notifier:
    """``version`` increases on every notification; a waiter reads it before trying to
    claim and sleeps only while it is unchanged, so a notification that lands between a
    failed claim and the wait is never missed."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.version = 0
        self._waiters: set[_Waiter] = set()
        self._listener: _Listener | None = None

    async def notify(self, task_type: str | None = None, user_id: str | None = None) -> None:
        """Wake the waiters that could claim a task of ``task_type`` owned by ``user_id``
        (all waiters when no task is named), here and, with PostgreSQL, on every other
        replica."""
        if self.db.dialect == "postgres":
            payload = json.dumps([task_type, user_id]) if task_type else ""
            self.db.execute("notify", payload=payload)
        self.notify_local(task_type, user_id)

    def notify_local(self, task_type: str | None = None, user_id: str | None = None) -> None:
        self.version += 1
        for waiter in self._waiters:
            if task_type is None or waiter.interest.matches(task_type, user_id or ""):
                waiter.woken.set()

    async def wait(self, seen_version: int, timeout_s: float, interest: Interest) -> None:
        """Sleep until a matching notification, or ``timeout_s``."""
        if timeout_s <= 0 or self.version != seen_version:
            return
        waiter = _Waiter(interest)
        self._waiters.add(waiter)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.woken.wait(), timeout_s)
        finally:
            self._waiters.discard(waiter)

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def start_listening(self, url: str) -> None:
        """With PostgreSQL, start the thread that turns NOTIFYs into local wake-ups."""
        if self.db.dialect != "postgres":
            return
        self._listener = _Listener(url, asyncio.get_running_loop(), self)
        self._listener.start()

    def stop_listening(self) -> None:
        if self._listener is not None:
            self._listener.stop.set()


def _decode(payload: str) -> tuple[str | None, str | None]:
    """A NOTIFY payload as (task type, user); anything unreadable wakes everyone."""
    try:
        task_type, user_id = json.loads(payload) if payload else (None, None)
    except (ValueError, TypeError):
        return None, None
    if isinstance(task_type, str) and isinstance(user_id, str):
        return task_type, user_id
    return None, None


class _Listener(threading.Thread):
    def __init__(self, url: str, loop: asyncio.AbstractEventLoop, notifier: Notifier) -> None:
        super().__init__(name="pg-listen", daemon=True)
        self.url = url
        self.loop = loop
        self.notifier = notifier
        self.stop = threading.Event()

    def run(self) -> None:
        import psycopg

        while not self.stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._pump(conn)
            except psycopg.Error as exc:
                logger.warning("LISTEN {} failed, retrying: {}", CHANNEL, exc)
                self.stop.wait(LISTEN_RETRY_S)

    def _pump(self, conn: Any) -> None:
        while not self.stop.is_set():
            # notifies(timeout=…) returns after the timeout so that stop is seen.
            for note in conn.notifies(timeout=1.0):
                task_type, user_id = _decode(note.payload)
                self.loop.call_soon_threadsafe(self.notifier.notify_local, task_type, user_id)
