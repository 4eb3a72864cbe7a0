"""The Kubernetes manifests in deploy/k8s, checked offline (no cluster here).

Core resources are validated by ``kubernetes-validate`` (Kubernetes' own OpenAPI
schemas, strict: unknown fields refused) for the oldest and newest versions it knows.
KEDA's ScaledObject is a custom resource it has no schema for, so it is validated
against ``schemas/keda-scaledobject-v1alpha1.json`` (written from KEDA's CRD and
documentation; see its ``$comment``), its HPA behaviour block against Kubernetes' own
``HorizontalPodAutoscalerBehavior``, and its PromQL by ``promtool test rules`` on
synthetic series from two server replicas. The rest checks that the pieces fit: selectors
match labels, secrets are files, the scaler's task types are the pools'.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
SCHEMA = Path(__file__).parent / "schemas" / "keda-scaledobject-v1alpha1.json"

kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
from kubernetes_validate import utils as kv_utils  # noqa: E402

#: Oldest Kubernetes the manifests must suit (policy/v1 PDBs, seccompProfile fields).
OLDEST = "1.25"


def documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            found += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in documents() if doc["kind"] == kind}


CORE = [(f, d) for f, d in documents() if not d["apiVersion"].startswith("keda.sh/")]


@pytest.mark.parametrize("version", [OLDEST, kv_utils.latest_version()])
@pytest.mark.parametrize(
    "name,doc", CORE, ids=[f"{f}:{d['kind']}/{d['metadata']['name']}" for f, d in CORE]
)
def test_core_resources_pass_kubernetes_schemas(name, doc, version):
    kv.validate(doc, version, strict=True)


def test_the_validator_would_catch_a_typo():
    deployment = json.loads(json.dumps(of_kind("Deployment")["morag-server"]))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["imagePulPolicy"] = container.pop("imagePullPolicy")
    with pytest.raises(kv_utils.ValidationError):
        kv.validate(deployment, kv_utils.latest_version(), strict=True)


def test_kustomization_lists_every_manifest():
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(listed) == sorted(on_disk)


# ---- KEDA --------------------------------------------------------------------------------


def keda_validator() -> Any:
    import jsonschema

    return jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))


def hpa_behavior_validator() -> Any:
    """Kubernetes' schema for an HPA's ``behavior``, from kubernetes-validate's files."""
    import importlib.resources

    import jsonschema

    folder = f"kubernetes-json-schema/v{kv_utils.latest_version()}-local-strict"
    definitions = json.loads(
        importlib.resources.files("kubernetes_validate")
        .joinpath(folder, "_definitions.json")
        .read_text()
    )
    name = "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerBehavior"
    return jsonschema.Draft202012Validator({**definitions, "$ref": f"#/$defs/{name}"})


@pytest.mark.parametrize("name", sorted(of_kind("ScaledObject")))
def test_scaled_object_passes_keda_schema(name):
    scaled = of_kind("ScaledObject")[name]
    keda_validator().validate(scaled)
    behavior = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    hpa_behavior_validator().validate(behavior)


def test_keda_schema_would_catch_mistakes():
    scaled = json.loads(json.dumps(next(iter(of_kind("ScaledObject").values()))))
    scaled["spec"]["triggers"][0]["metadata"]["threshold"] = 3  # KEDA wants strings
    assert list(keda_validator().iter_errors(scaled))
    scaled = json.loads(json.dumps(next(iter(of_kind("ScaledObject").values()))))
    scaled["spec"]["maxReplicas"] = 4  # HPA's name, not KEDA's
    assert list(keda_validator().iter_errors(scaled))
    behavior = {"scaleDown": {"policies": [{"type": "Pods", "value": 1}]}}  # no periodSeconds
    assert list(hpa_behavior_validator().iter_errors(behavior))


def queried_types(query: str) -> set[str]:
    return set(re.search(r'task_type=~"([^"]+)"', query).group(1).split("|"))


def test_each_pool_scales_on_the_task_types_it_serves():
    from morag_worker.config import DEFAULT_POOL_TYPES, parse_pool_types

    pools = parse_pool_types(DEFAULT_POOL_TYPES)
    deployments = of_kind("Deployment")
    for scaled in of_kind("ScaledObject").values():
        target = deployments[scaled["spec"]["scaleTargetRef"]["name"]]
        env = {
            e["name"]: e.get("value")
            for e in target["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        (trigger,) = scaled["spec"]["triggers"]
        query = trigger["metadata"]["query"]
        assert trigger["type"] == "prometheus" and "morag_server_tasks{" in query
        assert queried_types(query) == set(pools[env["WORKER_TYPE"]])
        assert 'state=~"queued|leased"' in query


needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool is missing: apt-get install prometheus"
)


@needs_promtool
def test_scaler_query_counts_the_queue_once_across_server_replicas(tmp_path):
    """Two replicas export the same queue; the query must count it once, and only the
    pool's types and the queued and leased states."""
    (gpu, cpu) = (
        of_kind("ScaledObject")[n]["spec"]["triggers"][0]["metadata"]["query"]
        for n in ("morag-http-worker", "morag-http-worker-cpu")
    )
    rules = {
        "groups": [
            {
                "name": "keda",
                "rules": [{"record": "keda:gpu", "expr": gpu}, {"record": "keda:cpu", "expr": cpu}],
            }
        ]
    }
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
    series = []
    for instance in ("server-a:8000", "server-b:8000"):
        for task_type, state, count in [
            ("audio", "queued", 5),
            ("audio", "leased", 2),
            ("video", "queued", 1),
            ("audio", "completed", 40),
            ("document", "queued", 7),
            ("web", "leased", 1),
            ("noop", "queued", 9),
        ]:
            labels = f'task_type="{task_type}",state="{state}",instance="{instance}"'
            series.append({"series": f"morag_server_tasks{{{labels}}}", "values": f"{count}x3"})
    test = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "promql_expr_test": [
                    {
                        "expr": "keda:gpu",
                        "eval_time": "2m",
                        "exp_samples": [{"labels": "keda:gpu", "value": 8}],
                    },
                    {
                        "expr": "keda:cpu",
                        "eval_time": "2m",
                        "exp_samples": [{"labels": "keda:cpu", "value": 8}],
                    },
                ],
            }
        ],
    }
    (tmp_path / "test.yml").write_text(yaml.safe_dump(test))
    done = subprocess.run(
        ["promtool", "test", "rules", "test.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# ---- How the pieces fit ------------------------------------------------------------------


def pod_specs() -> dict[str, dict[str, Any]]:
    return {n: d["spec"]["template"] for n, d in of_kind("Deployment").items()}


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_secrets_are_files_never_environment():
    for name, template in pod_specs().items():
        spec = template["spec"]
        secret_volumes = {v["name"] for v in spec["volumes"] if "secret" in v}
        for container in spec["containers"]:
            assert "envFrom" not in container, name
            for var in container["env"]:
                assert "secretKeyRef" not in var.get("valueFrom", {}), (name, var["name"])
            mounts = {m["name"]: m for m in container["volumeMounts"]}
            secret_dirs = [mounts[v]["mountPath"] for v in secret_volumes]
            assert all(mounts[v].get("readOnly") for v in secret_volumes), name
            files = [v["value"] for v in container["env"] if v["name"].endswith("_FILE")]
            assert files, name
            for path in files:
                assert any(path.startswith(d + "/") for d in secret_dirs), (name, path)


def test_server_deployment_service_and_disruption_budget_fit():
    server = of_kind("Deployment")["morag-server"]
    labels = server["spec"]["template"]["metadata"]["labels"]
    assert server["spec"]["replicas"] >= 2
    assert server["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    service = of_kind("Service")["morag-server"]
    assert matches(service["spec"]["selector"], labels)
    ports = {
        p["name"]: p["containerPort"]
        for p in server["spec"]["template"]["spec"]["containers"][0]["ports"]
    }
    (port,) = service["spec"]["ports"]
    assert port["port"] == 8000 and port["targetPort"] in ports
    budget = of_kind("PodDisruptionBudget")["morag-server"]
    assert matches(budget["spec"]["selector"]["matchLabels"], labels)
    assert 1 <= budget["spec"]["minAvailable"] < server["spec"]["replicas"]


def test_workers_reach_the_server_service_and_drain_before_being_killed():
    drain_s = int(
        re.search(
            r"^MORAG_DRAIN_TIMEOUT=(\d+)$", (REPO / "etc" / "worker.env.example").read_text(), re.M
        ).group(1)
    )
    for name in ("morag-http-worker", "morag-http-worker-cpu"):
        spec = pod_specs()[name]["spec"]
        env = {e["name"]: e for e in spec["containers"][0]["env"]}
        assert env["MORAG_SERVER_URL"]["value"] == "http://morag-server:8000"
        assert env["MORAG_WORKER_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
        assert spec["terminationGracePeriodSeconds"] > drain_s
        assert spec["securityContext"]["runAsUser"] == 10001  # the image's USER
        probes = spec["containers"][0]
        assert probes["livenessProbe"]["httpGet"]["path"] == "/health"
        assert probes["readinessProbe"]["httpGet"]["path"] == "/ready"
    gpu = pod_specs()["morag-http-worker"]["spec"]["containers"][0]
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_network_policies_select_the_pods_they_mean():
    policies = of_kind("NetworkPolicy")
    pods = {n: t["metadata"]["labels"] for n, t in pod_specs().items()}
    server_policy = policies["morag-server"]["spec"]
    assert [
        n
        for n, labels in pods.items()
        if matches(server_policy["podSelector"]["matchLabels"], labels)
    ] == ["morag-server"]
    worker_policy = policies["morag-workers"]["spec"]
    selected = {
        n
        for n, labels in pods.items()
        if matches(worker_policy["podSelector"]["matchLabels"], labels)
    }
    assert selected == {"morag-http-worker", "morag-http-worker-cpu"}
    # Workers may call the server's port, and the server admits workers on it.
    (to_server,) = [
        r
        for r in worker_policy["egress"]
        if any(
            matches(p.get("podSelector", {}).get("matchLabels", {"-": "-"}), pods["morag-server"])
            for p in r.get("to", [])
        )
    ]
    assert to_server["ports"] == [{"protocol": "TCP", "port": 8000}]
    admitted = server_policy["ingress"][0]
    assert any(
        matches(p.get("podSelector", {}).get("matchLabels", {"-": "-"}), pods["morag-http-worker"])
        for p in admitted["from"]
    )
    assert admitted["ports"] == [{"protocol": "TCP", "port": 8000}]
