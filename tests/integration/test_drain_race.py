"""Once a stop signal has arrived, no task starts: ready (prefetched) tasks go back.

The main loop logs "dispatched to child" (DEBUG) for every task it starts and "stop
signal: draining" when it handles SIGTERM; both come from the one main thread, so the
order of the two lines in the log is the order of the events. Each trial stops a busy
supervisor in the middle of a stream of short tasks, with tasks prefetched and children
freeing up all the time: the moment the race needs.
"""

from __future__ import annotations

import signal
import time

from harness import Cluster, log_lines, submit_noop, wait_for

from morag_worker.cli.api import TERMINAL

TRIALS = 4


def test_nothing_starts_after_a_stop_signal(cluster: Cluster) -> None:
    user = cluster.user()
    key = cluster.key_file("alice")
    for trial in range(TRIALS):
        proc, _ = cluster.supervisor(
            key,
            "--cpu-procs",
            "2",
            "--prefetch",
            "4",
            "--worker-id",
            f"drain-{trial}",
            "--log-level",
            "DEBUG",
        )
        ids = [submit_noop(user, sleep_s=0.05) for _ in range(40)]
        wait_for(lambda ids=ids: _completed(user, ids) >= 8, 60, "the stream flowing")
        time.sleep(0.01 * trial)  # a different moment in the stream each trial
        proc.signal(signal.SIGTERM)
        assert proc.proc.wait(timeout=60) == 0
        messages = [line["message"] for line in log_lines(proc)]
        stop = messages.index("stop signal: draining (up to 300.0 s)")
        late = [m for m in messages[stop:] if m.startswith("dispatched to child")]
        assert late == [], f"trial {trial}: {len(late)} tasks started after the stop signal"
        # What was not finished went back without an attempt spent.
        for info in user.get("/api/v1/tasks?limit=500")["tasks"]:
            if info["task_id"] in ids and info["state"] not in TERMINAL:
                assert info["state"] == "queued" and info["attempt"] == 0, info
        for task_id in ids:  # leave an empty queue for the next trial
            if user.get(f"/api/v1/tasks/{task_id}")["state"] not in TERMINAL:
                user.delete(f"/api/v1/tasks/{task_id}")


def _completed(user: object, ids: list[str]) -> int:
    tasks = user.get("/api/v1/tasks?limit=500")["tasks"]  # type: ignore[attr-defined]
    return sum(1 for t in tasks if t["task_id"] in ids and t["state"] == "completed")
