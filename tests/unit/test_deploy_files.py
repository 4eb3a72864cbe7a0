"""Container and Kubernetes files, which cannot be built or applied here (no Docker engine,
no cluster): parsed, and checked for the settings that make them work together."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SEED_VARIABLES = {"MORAG_SERVER_URL", "WORKER_TYPE", "POLL_INTERVAL", "LOG_LEVEL"}


def drain_timeout_s() -> int:
    text = (REPO / "etc" / "worker.env.example").read_text()
    return int(re.search(r"^MORAG_DRAIN_TIMEOUT=(\d+)$", text, re.M).group(1))


@pytest.mark.parametrize("name", ["Dockerfile.gpu", "Dockerfile.cpu"])
def test_dockerfile_runs_the_supervisor_as_a_user_with_a_health_check(name):
    text = (REPO / name).read_text()
    assert 'ENTRYPOINT ["morag-supervisor"]' in text
    assert re.search(r"^USER (?!root)\S+$", text, re.M)
    assert "HEALTHCHECK" in text and "/health" in text
    assert "pip install" in text and "[all]" in text
    for path in re.findall(r"^COPY (.+) \S+$", text, re.M):
        for source in path.split():
            assert (REPO / source).exists() or source == "README.md", source


def test_gpu_image_is_cuda_and_cpu_image_is_slim():
    assert re.search(r"^FROM nvidia/cuda:\S+-runtime-", (REPO / "Dockerfile.gpu").read_text(), re.M)
    assert re.search(r"^FROM python:3\.\d+-slim$", (REPO / "Dockerfile.cpu").read_text(), re.M)


def test_compose_runs_server_and_both_workers():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"morag-server", "morag-worker-gpu", "morag-worker-cpu"} <= set(services)
    for name in ("morag-worker-gpu", "morag-worker-cpu"):
        worker = services[name]
        assert set(worker["environment"]) >= SEED_VARIABLES
        assert worker["environment"]["MORAG_API_KEY_FILE"].startswith("/run/secrets/")
        assert int(worker["stop_grace_period"].rstrip("s")) > drain_timeout_s()
        assert worker["depends_on"]["morag-server"]["condition"] == "service_healthy"
    gpu = services["morag-worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and gpu["capabilities"] == ["gpu"]


def test_kubernetes_worker_takes_the_key_from_a_secret_and_probes_health():
    deployment = yaml.safe_load((REPO / "deploy" / "k8s" / "worker-deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    env = {e["name"]: e for e in container["env"]}
    key_file = env["MORAG_API_KEY_FILE"]["value"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert key_file.startswith(mounts["api-key"] + "/")
    assert volumes["api-key"]["secret"]["secretName"] == "morag-secrets"
    assert pod["terminationGracePeriodSeconds"] > drain_timeout_s()
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
