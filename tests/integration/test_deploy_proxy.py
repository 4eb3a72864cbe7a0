"""The scale profile's proxy for real: nginx with etc/nginx/morag-proxy.conf (only its
addresses moved to 127.0.0.1) in front of two morag-server replicas sharing PostgreSQL
and one data directory, and a supervisor that knows only the proxy. A document uploaded
through the proxy is leased, downloaded, processed and its result fetched, whichever
replica each call lands on."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from harness import postgres_schema

from morag_worker.cli.api import Api
from morag_worker.cli.local import free_port, start_server, start_supervisor, wait_http

REPO = Path(__file__).resolve().parents[2]


def nginx_config(tmp_path: Path, listen: int, upstreams: list[int]) -> Path:
    """The proxy's server block as shipped, but listening and proxying on 127.0.0.1."""
    conf = (REPO / "etc" / "nginx" / "morag-proxy.conf").read_text()
    names = re.findall(r"^\s*server (\S+:8000)", conf, re.M)
    assert len(names) == len(upstreams)
    for name, port in zip(names, upstreams, strict=True):
        conf = conf.replace(f"server {name}", f"server 127.0.0.1:{port}")
    conf = conf.replace("listen 8000;", f"listen 127.0.0.1:{listen};")
    (tmp_path / "morag-proxy.conf").write_text(conf)
    temp = "\n".join(
        f"  {kind}_temp_path {tmp_path}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    main = tmp_path / "nginx.conf"
    main.write_text(
        ("user root;\n" if os.geteuid() == 0 else "")
        + f"daemon off;\npid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n"
        + "events {}\nhttp {\n  log_format upstream '$status $upstream_addr $request';\n"
        + f"  access_log {tmp_path}/access.log upstream;\n{temp}\n"
        + f"  include {tmp_path}/morag-proxy.conf;\n}}\n"
    )
    return main


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is missing: apt-get install nginx")
def test_two_replicas_behind_the_proxy_serve_a_supervisor(tmp_path):
    with postgres_schema() as url:
        data = tmp_path / "data"  # the shared file store (a volume in compose)
        ports = [free_port(), free_port()]
        env = {"MORAG_DATABASE_URL": url}
        servers = [start_server(data, ports[0], "--no-index", env=env)]
        servers.append(start_server(data, ports[1], "--no-index", env=env))
        proxy_port = free_port()
        conf = nginx_config(tmp_path, proxy_port, ports)
        check = subprocess.run(
            ["nginx", "-t", "-c", str(conf)], capture_output=True, text=True, timeout=30
        )
        assert check.returncode == 0, check.stderr
        nginx = subprocess.Popen(["nginx", "-c", str(conf)], stderr=subprocess.PIPE)
        supervisor = None
        try:
            proxy = f"http://127.0.0.1:{proxy_port}"
            wait_http(f"{proxy}/health", 30, nginx)
            admin = Api(proxy, (data / "admin.key").read_text().strip())
            key_file = tmp_path / "worker.key"
            body = {"user_id": "ops", "role": "worker", "pool": True}
            key_file.write_text(admin.post_json("/api/v1/keys", body)["key"])
            user_key = admin.post_json("/api/v1/keys", {"user_id": "amy", "role": "user"})
            supervisor = start_supervisor(
                proxy,
                key_file,
                tmp_path / "supervisor.log",
                free_port(),
                "--cpu-procs",
                "1",
                "--threads-per-proc",
                "1",
                "--poll-interval",
                "3",
            )
            note = tmp_path / "harbour.md"
            note.write_text("# Harbour\n\nThe ferry now leaves at seven, not eight.\n" * 200)
            user = Api(proxy, user_key["key"])
            task = user.submit_file(note, "document", {})
            done = user.wait(task, 120)
            assert done["state"] == "completed", done
            result = user.get(f"/api/v1/tasks/{task}/result")
            assert "ferry now leaves at seven" in result["result"]["content"]
            log = (tmp_path / "access.log").read_text()
            statuses = re.findall(r"^(\d{3}) ", log, re.M)
            assert statuses and not {"502", "504"} & set(statuses), log[-2000:]
            # Both replicas answered: each call may land on either, which the shared
            # database and file store make safe.
            for port in ports:
                assert f"127.0.0.1:{port} " in log, log[-2000:]
        finally:
            if supervisor is not None:
                supervisor.stop(timeout_s=30)
            nginx.terminate()
            nginx.wait(timeout=10)
            for server in servers:
                server.stop()
