"""Network exposure of the deployment: NetworkPolicy, securityContext, ServiceMonitor, image contents."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from clickcash.config.settings import MonitoringSettings

REPO = Path(__file__).resolve().parents[2]
KUBERAY = REPO / "cluster" / "deploy" / "kuberay"


def _docs() -> dict[str, dict[str, Any]]:
    kustomization = yaml.safe_load((KUBERAY / "kustomization.yaml").read_text())
    out = {}
    for resource in kustomization["resources"]:
        for doc in yaml.safe_load_all((KUBERAY / resource).read_text()):
            if doc is not None:
                out[doc["kind"]] = doc
    return out


def _pod_specs(docs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    spec = docs["RayCluster"]["spec"]
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    return [g["template"]["spec"] for g in groups] + [docs["RayJob"]["spec"]["submitterPodTemplate"]["spec"]]


def test_metrics_status_and_healthz_bind_loopback_by_default() -> None:
    assert MonitoringSettings().metrics_host == "127.0.0.1"


def test_every_pod_runs_unprivileged() -> None:
    for pod in _pod_specs(_docs()):
        sc = pod["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] != 0
        assert sc["seccompProfile"]["type"] == "RuntimeDefault"
        for c in pod["containers"]:
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_network_policy_selects_the_cluster_and_opens_only_named_ports_outside_it() -> None:
    docs = _docs()
    policy = docs["NetworkPolicy"]
    assert policy["apiVersion"] == "networking.k8s.io/v1"
    spec = policy["spec"]
    cluster = docs["RayCluster"]["metadata"]["name"]
    assert spec["podSelector"]["matchLabels"] == {"ray.io/cluster": cluster}
    assert set(spec["policyTypes"]) == {"Ingress", "Egress"}
    for rule in spec["ingress"]:
        peers = rule["from"]
        from_this_namespace = all(set(p) == {"podSelector"} for p in peers)
        assert from_this_namespace or rule.get("ports"), (
            f"a rule opens every port to another namespace: {rule}"
        )
    metrics_port = docs["Service"]["spec"]["ports"][0]["port"]
    opened = {p["port"] for r in spec["ingress"] for p in r.get("ports", [])}
    assert metrics_port in opened and opened <= {metrics_port, 8265}


def test_service_monitor_scrapes_the_metrics_service() -> None:
    docs = _docs()
    monitor, service = docs["ServiceMonitor"], docs["Service"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    labels = service["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    port_names = {p["name"] for p in service["spec"]["ports"]}
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"] and "metrics" in port_names
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


def test_images_never_get_the_venv_the_local_ray_token_or_reports() -> None:
    root = (REPO / ".dockerignore").read_text()
    beside = (REPO / "cluster" / "deploy" / "Dockerfile.dockerignore").read_text()
    assert root == beside, "BuildKit reads Dockerfile.dockerignore, the classic builder .dockerignore"
    patterns = {ln.strip() for ln in root.splitlines() if ln.strip() and not ln.startswith("#")}
    assert {".venv", ".cache", "reports", ".git", "**/*.pem", "**/*.key"} <= patterns
    dockerfile = (REPO / "cluster" / "deploy" / "Dockerfile").read_text()
    assert "COPY --chown=ray:users . " in dockerfile, "the build context is the repository root"


def _secret_env_names() -> set[str]:
    from pydantic import BaseModel, SecretStr

    from clickcash.config.settings import ENV_PREFIX, Settings

    names = set()
    for section, info in Settings.model_fields.items():
        model = info.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            for name, field in model.model_fields.items():
                if "SecretStr" in str(field.annotation) or field.annotation is SecretStr:
                    names.add(f"{ENV_PREFIX}{section}__{name}".upper())
    return names


def test_no_secret_setting_is_inlined_in_the_deployment() -> None:
    secrets = _secret_env_names()
    assert {"CLICKCASH_KAFKA__SASL_PASSWORD", "CLICKCASH_REDIS__PASSWORD"} <= secrets
    assert "CLICKCASH_KAFKA__SASL_OAUTHBEARER_CLIENT_SECRET" in secrets
    params = {ln.split("=", 1)[0] for ln in (KUBERAY / "params.env").read_text().splitlines() if "=" in ln}
    assert not params & secrets, "secrets belong in the Secret, not the ConfigMap"
    for pod in _pod_specs(_docs()):
        for c in pod["containers"]:
            for env in c.get("env", []):
                if env["name"] in secrets:
                    assert "value" not in env and "secretKeyRef" in env["valueFrom"], env["name"]
