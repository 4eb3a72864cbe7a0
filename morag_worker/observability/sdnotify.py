"""systemd's readiness protocol (sd_notify) without a dependency.

systemd passes ``NOTIFY_SOCKET``, a unix datagram socket (a path, or ``@name`` for the
abstract namespace); each notification is one datagram of ``KEY=VALUE`` lines. When the
variable is unset (not under systemd, or not ``Type=notify``) every call is a no-op, so
callers never test for systemd themselves.

Only the supervisor (the unit's main process) notifies: the units use
``NotifyAccess=main``, and systemd ignores messages from children.

Every function returns whether a datagram was sent. A send that fails is not an error
for the caller: systemd acts on what it does not hear (the watchdog restarts the unit).
"""

from __future__ import annotations

import os
import socket
import time

#: Variables systemd sets for the main process only; a spawned child that inherits them
#: must not act on them.
NOTIFY_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def notify(*assignments: str) -> bool:
    """Send ``KEY=VALUE`` assignments as one datagram; ``False`` if unset or unsent."""
    address = _address(os.environ.get("NOTIFY_SOCKET", ""))
    if address is None:
        return False
    payload = "\n".join(assignments).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(payload, address)
    except OSError:
        return False
    return True


def _address(value: str) -> str | None:
    """The socket address for ``NOTIFY_SOCKET``; ``None`` when unset or not a unix socket
    (systemd 253+ may also pass ``vsock:`` addresses, used only inside VMs)."""
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None


def ready(status_text: str | None = None) -> bool:
    """READY=1: start-up (or a reload) is finished; systemd starts dependent units."""
    return notify("READY=1", *_status(status_text))


def watchdog() -> bool:
    """WATCHDOG=1: the service is alive; send every :func:`watchdog_interval_s`."""
    return notify("WATCHDOG=1")


def status(text: str) -> bool:
    """STATUS=: one line shown by ``systemctl status`` (newlines become spaces)."""
    return notify(*_status(text))


def stopping(status_text: str | None = None) -> bool:
    """STOPPING=1: shutdown has begun (the supervisor is draining)."""
    return notify("STOPPING=1", *_status(status_text))


def reloading(status_text: str | None = None) -> bool:
    """RELOADING=1: a reload has begun; :func:`ready` must follow when it is done.

    ``MONOTONIC_USEC`` is included, which systemd 253+ requires and older ones ignore.
    """
    now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify("RELOADING=1", f"MONOTONIC_USEC={now_usec}", *_status(status_text))


def extend_timeout(usec: int) -> bool:
    """EXTEND_TIMEOUT_USEC=: the start or stop in progress needs ``usec`` more from now.

    systemd only ever extends by this much from the moment it hears it, so a long drain
    sends it again before the previous extension runs out.
    """
    if usec < 1:
        raise ValueError(f"extend_timeout needs a positive number of microseconds, got {usec}")
    return notify(f"EXTEND_TIMEOUT_USEC={int(usec)}")


def watchdog_interval_s() -> float | None:
    """Seconds between :func:`watchdog` pings (half of ``WatchdogSec=``, as systemd
    recommends), or ``None`` when the watchdog is not enabled for this process."""
    try:
        usec = int(os.environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = os.environ.get("WATCHDOG_PID")
    if usec <= 0 or (pid is not None and pid != str(os.getpid())):
        return None
    return usec / 2 / 1_000_000


def _status(text: str | None) -> list[str]:
    if text is None:
        return []
    return ["STATUS=" + " ".join(text.splitlines())]
