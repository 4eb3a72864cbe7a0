"""Waking long-polling lease requests when work may have become available.

Each waiting long-poll registers what it can take (its task types, and its user unless
its key is a pool key). A notification names the task it is about (type and user) when
there is one: it wakes *one* waiter that could claim that task, the one waiting
longest, so a fleet of workers serving other types or other users sleeps on, and so do
the other workers that could take it (waking them all made every submission cost one
claim per waiting worker: bench/fleet.py, docs/design.md). A woken waiter that leaves
without claiming (its client went away, its claim failed) passes the task on to the
next. A notification without a task (the reaper returned expired leases, a task was
released) wakes every waiter.

With PostgreSQL, several server replicas share the queue: every notification is also
sent as ``NOTIFY`` on one channel with the task's type and user as payload, and each
replica runs a listener thread (``LISTEN``) that wakes one of its own matching waiters
(skipping its own notifications, already delivered), so a task submitted to one
replica reaches a worker long-polling another at once. A lost
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


#: The task a waiter was woken for: its type and user.
TaskKey = tuple[str, str]


@dataclass(eq=False)
class _Waiter:
    interest: Interest
    woken: asyncio.Event = field(default_factory=asyncio.Event)
    task: TaskKey | None = None


class Notifier:
    """``version`` increases on every notification; a waiter reads it before trying to
    claim and sleeps only while it is unchanged, so a notification that lands between a
    failed claim and the wait is never missed."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.version = 0
        #: Oldest first (a dict keeps insertion order): the longest wait is woken first.
        self._waiters: dict[_Waiter, None] = {}
        self._listener: _Listener | None = None

    async def notify(self, task_type: str | None = None, user_id: str | None = None) -> None:
        """Wake a waiter that could claim a task of ``task_type`` owned by ``user_id``
        (all waiters when no task is named), here and, with PostgreSQL, on every other
        replica."""
        if self.db.dialect == "postgres":
            payload = json.dumps([task_type, user_id]) if task_type else ""
            self.db.execute("notify", payload=payload)
        self.notify_local(task_type, user_id)

    def notify_local(self, task_type: str | None = None, user_id: str | None = None) -> None:
        """Wake the longest-waiting waiter not yet woken that could claim the task (every
        waiter when no task is named). Waiters between a claim and their wait see
        ``version`` change and claim again instead of sleeping."""
        self.version += 1
        if task_type is None:
            for waiter in self._waiters:
                waiter.woken.set()
            return
        for waiter in self._waiters:
            if not waiter.woken.is_set() and waiter.interest.matches(task_type, user_id or ""):
                waiter.task = (task_type, user_id or "")
                waiter.woken.set()
                return

    def pass_on(self, task: TaskKey | None) -> None:
        """A waiter woken for ``task`` leaves without claiming: wake the next one."""
        if task is not None:
            self.notify_local(*task)

    async def wait(self, seen_version: int, timeout_s: float, interest: Interest) -> TaskKey | None:
        """Sleep until a notification for a task ``interest`` matches, or one for every
        waiter, or ``timeout_s``. Returns the task it was woken for (None when woken for
        everyone, or not woken); the caller claims, or calls :meth:`pass_on` with it."""
        if timeout_s <= 0 or self.version != seen_version:
            return None
        waiter = _Waiter(interest)
        self._waiters[waiter] = None
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.woken.wait(), timeout_s)
        except BaseException:
            self.pass_on(waiter.task)  # cancelled after being woken: someone else claims
            raise
        finally:
            self._waiters.pop(waiter, None)
        return waiter.task

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
                if note.pid == self.notifier.db.backend_pid():
                    continue  # this replica's own: notify() woke its waiters already
                task_type, user_id = _decode(note.payload)
                self.loop.call_soon_threadsafe(self.notifier.notify_local, task_type, user_id)
