"""Waking long-polling lease requests when work may have become available.

Within one server process an :class:`asyncio.Condition` does it. With PostgreSQL, several
server replicas share the queue: every notification is also sent as ``NOTIFY`` on one
channel, and each replica runs a listener thread (``LISTEN``) that wakes its own
waiters, so a task submitted to one replica reaches a worker long-polling another at
once. A lost notification costs latency, never a task: waiters also wake when the next
delayed task is due and when their wait ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

from loguru import logger

from morag_worker.server.db import Database

CHANNEL = "morag_tasks"
#: Back-off before reconnecting a listener whose connection dropped.
LISTEN_RETRY_S = 2.0


class Notifier:
    """``version`` increases on every notification; a waiter reads it before trying to
    claim and sleeps only while it is unchanged, so a notification that lands between a
    failed claim and the wait is never missed."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.version = 0
        self._cond: asyncio.Condition | None = None
        self._listener: _Listener | None = None

    def _condition(self) -> asyncio.Condition:
        if self._cond is None:
            self._cond = asyncio.Condition()
        return self._cond

    async def notify(self) -> None:
        """Wake waiters here and, with PostgreSQL, on every other replica."""
        if self.db.dialect == "postgres":
            self.db.execute("notify")
        await self.notify_local()

    async def notify_local(self) -> None:
        cond = self._condition()
        async with cond:
            self.version += 1
            cond.notify_all()

    async def wait(self, seen_version: int, timeout_s: float) -> None:
        if timeout_s <= 0:
            return
        cond = self._condition()
        async with cond:
            if self.version != seen_version:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(cond.wait(), timeout_s)

    def start_listening(self, url: str) -> None:
        """With PostgreSQL, start the thread that turns NOTIFYs into local wake-ups."""
        if self.db.dialect != "postgres":
            return
        self._listener = _Listener(url, asyncio.get_running_loop(), self)
        self._listener.start()

    def stop_listening(self) -> None:
        if self._listener is not None:
            self._listener.stop.set()


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
            for _ in conn.notifies(timeout=1.0):
                asyncio.run_coroutine_threadsafe(self.notifier.notify_local(), self.loop)
