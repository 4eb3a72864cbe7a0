"""Two server replicas on one PostgreSQL queue, as behind a load balancer; a connection
PostgreSQL drops (a restart, a failover) is replaced without restarting the server."""

from __future__ import annotations

import secrets

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


def test_a_dropped_database_connection_is_503_then_reconnected(cluster_factory) -> None:
    """PostgreSQL ends the server's connections (as a restart or a failover does): the
    request that meets the loss answers 503 with the JSON error, and the server
    reconnects by itself instead of failing every later request until it restarts."""
    import psycopg
    import requests
    from harness import PG_URL

    with postgres_schema() as url:
        name = "morag_drop_" + secrets.token_hex(4)
        cluster: Cluster = cluster_factory("--database-url", f"{url}&application_name={name}")
        user = cluster.user("alice")
        assert submit_noop(user)
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            ended = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s",
                (name,),
            ).fetchall()
        assert ended  # the server's connections are gone
        codes = []
        for _ in range(5):
            reply = requests.post(
                f"{cluster.url}/api/v1/tasks",
                headers={"Authorization": user.session.headers["Authorization"]},
                json={"task_type": "noop", "parameters": {}},
                timeout=10,
            )
            codes.append(reply.status_code)
            if reply.status_code == 201:
                break
            assert reply.status_code == 503, reply.text
            assert reply.json()["error"]["code"] == "database_unavailable"
        assert codes[-1] == 201, codes
        assert len(user.get("/api/v1/tasks")["tasks"]) == 2
