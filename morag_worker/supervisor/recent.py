"""The last errors the supervisor saw, for ``/status``: what an operator looks at first."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

#: Enough to see a pattern, little enough to read at a glance.
KEPT = 20


class RecentErrors:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._errors: deque[dict[str, Any]] = deque(maxlen=KEPT)

    def note(self, kind: str, message: str, **where: str | None) -> None:
        entry = {"at": time.time(), "type": kind, "message": message[:500]}
        entry.update({k: v for k, v in where.items() if v is not None})
        with self._lock:
            self._errors.append(entry)

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._errors)
