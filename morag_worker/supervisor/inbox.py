"""The main loop's inbox: items from the supervisor's threads, waitable beside pipes.

Threads (lease, heartbeat, transfers) ``put`` items; the main loop waits on the inbox
together with every child's pipe in one ``multiprocessing.connection.wait`` call, so
an event from a child and an item from a thread wake it equally fast, with no thread
in between. A byte on a socket pair is the wake-up; the items themselves sit in a deque.
The same socket is the loop's signal wake-up (``signal.set_wakeup_fd``), so a stop
signal ends the wait at once.
"""

from __future__ import annotations

import collections
import contextlib
import socket

from morag_worker.supervisor.messages import InboxItem


class Inbox:
    def __init__(self) -> None:
        self._items: collections.deque[InboxItem] = collections.deque()
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)

    def put(self, item: InboxItem) -> None:
        """Add an item and wake the main loop. Safe from any thread."""
        self._items.append(item)
        self.wake()

    def wake(self) -> None:
        # A full buffer means wake-ups are already pending: the loop is awake anyway.
        with contextlib.suppress(BlockingIOError):
            self._writer.send(b"\0")

    @property
    def waitable(self) -> socket.socket:
        """What ``multiprocessing.connection.wait`` watches for this inbox."""
        return self._reader

    def wakeup_fd(self) -> int:
        """The descriptor for ``signal.set_wakeup_fd``: a signal wakes the loop too."""
        return self._writer.fileno()

    def drain(self) -> list[InboxItem]:
        """Every item waiting now, oldest first."""
        try:
            while self._reader.recv(4096):
                pass
        except BlockingIOError:
            pass
        items = []
        while self._items:
            items.append(self._items.popleft())
        return items

    def close(self) -> None:
        self._reader.close()
        self._writer.close()
