"""Two server replicas on one PostgreSQL queue, as behind a load balancer."""

from __future__ import annotations

from harness import Cluster, postgres_schema, submit_noop

from morag_worker.cli.api import Api
from morag_worker.cli.local import free_port, start_server


def test_two_replicas_share_the_queue_and_wake_each_other(cluster_factory) -> None:
    with postgres_schema() as url:
        first: Cluster = cluster_factory("--database-url", url)
        port = free_port()
        second = start_server(
            first.root / "replica", port, "--database-url", url, "--no-index", "--lease-ttl", "3"
        )
        try:
            user_on_second = Api(f"http://127.0.0.1:{port}", first.key("alice", "user"))
            # The worker long-polls the first replica for up to 60 s per call: only a
            # NOTIFY from the second replica can wake it in time for these waits.
            first.supervisor(first.key_file("alice"), "--cpu-procs", "1", "--poll-interval", "60")
            for _ in range(3):
                task_id = submit_noop(user_on_second)
                info = user_on_second.wait(task_id, 20)
                assert info["state"] == "completed" and info["attempt"] == 1
            tasks = first.user("alice").get("/api/v1/tasks")["tasks"]
            assert len(tasks) == 3  # one queue behind both replicas
        finally:
            second.stop()
