"""Settings, results and constants shared by the campaign's parts."""

from __future__ import annotations

import os
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FIXTURES = ROOT / "tests" / "fixtures"
SERVER_TYPES = (
    "--extra-task-types",
    "hog,hang,crash,cudaerr,envcheck,bigerror,bigresult,unserialisable,garbage,halfmessage,assume",
)  # every type the fault_processors plugin registers (tests/faults/faultkit.py)
TERMINAL = frozenset({"completed", "failed", "dead", "cancelled"})
#: Results over this size go from the child to the supervisor through a file
#: (``morag_worker.supervisor.child.INLINE_RESULT_BYTES``).
BIG_RESULT_KIB = 320
PG_URL = os.environ.get("MORAG_TEST_POSTGRES_URL", "postgresql://127.0.0.1:5432/test")
TASK_ID = re.compile(r"^t_[0-9a-f]+$")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Options:
    trials: int = 10
    tasks: int = 24
    cut_s: float = 10.0
    disk_full_s: float = 3.0
    window_s: float = 120.0
    lease_ttl_s: float = 3.0
    keep: bool = False
    budget_min: float = 0.0  # 0: no time budget


@dataclass
class Trial:
    tasks: int = 0
    lost: int = 0
    twice: int = 0
    stuck: int = 0
    extra: int = 0
    refused: int = 0
    recover_s: float | None = None
    fault_seen: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass
class Row:
    kind: str
    trials: list[Trial] = field(default_factory=list)
    skipped: str = ""

    def total(self, name: str) -> int:
        return sum(int(getattr(t, name)) for t in self.trials)

    @property
    def bad(self) -> bool:
        if self.skipped:
            return False
        return bool(
            self.total("lost")
            or self.total("twice")
            or self.total("stuck")
            or self.total("fault_seen") < len(self.trials)
        )

    def recover(self) -> str:
        times = [t.recover_s for t in self.trials if t.recover_s is not None]
        if not times:
            return "-"
        return f"{statistics.median(times):.1f} / {max(times):.1f}"
