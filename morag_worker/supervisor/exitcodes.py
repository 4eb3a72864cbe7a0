"""Child exit codes, named in one place and decoded in one place."""

from __future__ import annotations

import signal

EXIT_OK = 0
#: The child could not start: bad plugin, model preload failure, device unusable.
EXIT_BOOT_FAILED = 3
#: The child asked to be replaced (CUDA out-of-memory or a device fault).
EXIT_RECYCLE = 4


def describe_exit(exitcode: int | None) -> str:
    """A human description of a multiprocessing exit code (negative = killed by signal)."""
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"killed by {name}"
    names = {
        EXIT_OK: "exited normally",
        EXIT_BOOT_FAILED: "failed to boot",
        EXIT_RECYCLE: "asked to be recycled",
    }
    return names.get(exitcode, f"exited with code {exitcode}")
