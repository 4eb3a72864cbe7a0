"""Sizes and shares as operators write them (``6G``, ``25%``), parsed and resolved.

Used by the supervisor's per-child limits and its free-disk floor.

Memory limits (``--max-memory-per-child``, ``--max-gpu-memory-per-child``) are
``SOFT[,HARD]``:

- each part is a size or a share: ``6G``, ``6GiB``, ``512M``, ``6442450944`` (bytes), or
  ``25%`` (of the host's RAM, or of the GPU's memory for the GPU limit). ``K M G T`` are
  powers of 1024, as in systemd's ``MemoryMax=``; a trailing ``B`` or ``iB`` is allowed;
- ``SOFT`` alone is a soft limit only; ``,HARD`` alone is a hard limit only; with both,
  the hard limit must not be below the soft one; an empty value means no limit.

Soft: the child is replaced after its current task. Hard: the child is killed at once
and its task reported as a retryable failure of type ``memory``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from morag_worker.errors import ConfigError

_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$", re.IGNORECASE)
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


@dataclass(frozen=True)
class Amount:
    """A number of bytes, or a share (0-1] of a total known only later."""

    bytes: int = 0
    share: float = 0.0

    def resolve(self, total_bytes: int) -> int:
        """Bytes; a share of an unknown total (0) is no limit (0)."""
        return self.bytes if not self.share else int(self.share * total_bytes)


@dataclass(frozen=True)
class MemoryLimit:
    soft: Amount | None = None
    hard: Amount | None = None

    def __bool__(self) -> bool:
        return self.soft is not None or self.hard is not None

    def resolve(self, total_bytes: int) -> tuple[int, int]:
        """(soft, hard) in bytes, 0 where there is none."""
        soft = self.soft.resolve(total_bytes) if self.soft else 0
        hard = self.hard.resolve(total_bytes) if self.hard else 0
        return soft, hard


def parse_amount(flag: str, text: str) -> Amount:
    text = text.strip()
    if text.endswith("%"):
        try:
            percent = float(text[:-1])
        except ValueError:
            raise ConfigError(f"{flag}: expected a percentage like 25%, got {text!r}") from None
        if not 0 < percent <= 100:
            raise ConfigError(f"{flag}: a percentage must be above 0 and at most 100, got {text!r}")
        return Amount(share=percent / 100)
    match = _SIZE.match(text)
    if match is None:
        raise ConfigError(
            f"{flag}: expected a size like 6G, 6GiB, 512M, a number of bytes or a "
            f"percentage like 25%, got {text!r}"
        )
    value = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if value <= 0:
        raise ConfigError(f"{flag}: a size must be above 0, got {text!r}")
    return Amount(bytes=value)


def parse_memory_limit(flag: str, text: str) -> MemoryLimit:
    """``SOFT[,HARD]`` (see the module docstring); a bad value names ``flag``."""
    text = text.strip()
    if not text:
        return MemoryLimit()
    parts = text.split(",")
    if len(parts) > 2:
        raise ConfigError(f"{flag}: expected SOFT[,HARD], got {text!r}")
    soft = parse_amount(flag, parts[0]) if parts[0].strip() else None
    hard = parse_amount(flag, parts[1]) if len(parts) == 2 and parts[1].strip() else None
    if soft is None and hard is None:
        raise ConfigError(f"{flag}: expected SOFT[,HARD], got {text!r}")
    if soft and hard and _comparable(soft, hard) and _order(hard) < _order(soft):
        raise ConfigError(f"{flag}: the hard limit is below the soft limit in {text!r}")
    return MemoryLimit(soft, hard)


def _comparable(a: Amount, b: Amount) -> bool:
    return bool(a.share) == bool(b.share)


def _order(amount: Amount) -> float:
    return amount.share or amount.bytes
