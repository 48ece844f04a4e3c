"""The deployment files in cluster/deploy/ parse, validate, use only real setting names, inline no secret."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray.autoscaler
import yaml

from clickcash.config.settings import env_names, load_settings

DEPLOY = Path(__file__).resolve().parents[2] / "cluster" / "deploy"
KUBERAY = DEPLOY / "kuberay"
LAUNCHER = DEPLOY / "launcher" / "cluster-launcher.yaml"
SECRET_ENV = {
    "CLICKCASH_REDIS__URL",
    "CLICKCASH_KAFKA__SASL_PASSWORD",
    "CLICKCASH_SECURITY__TIMER_COMMAND_KEYS",
    "CLICKCASH_SECURITY__ERASURE_COMMAND_KEYS",
    "RAY_AUTH_TOKEN",
}
RAY_ENV = {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_max_direct_call_object_size"}
"""Ray's own variables the manifests may set: the auth mode and token, and the inline limit that
``ray.max_inline_object_bytes`` sets on a local instance (a joined cluster reads it from its nodes)"""
SECRET_NAME = "clickcash-secrets"


def _env_file(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            out[name.strip()] = value.strip()
    return out


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v)
    elif isinstance(node, str):
        yield node


def _no_inlined_secret(node: Any) -> None:
    for s in _strings(node):
        lowered = s.lower()
        assert not ("redis://" in lowered and "@" in lowered), f"credentials in a Redis URL: {s}"
        assert "password=" not in lowered and "token=" not in lowered, s


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc["spec"]
    if doc["kind"] == "RayCluster":
        groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
        return [c for g in groups for c in g["template"]["spec"]["containers"]]
    if doc["kind"] == "RayJob":
        return list(spec.get("submitterPodTemplate", {}).get("spec", {}).get("containers", []))
    return []


def test_launcher_yaml_validates_against_rays_schema() -> None:
    config = yaml.safe_load(LAUNCHER.read_text())
    schema_path = Path(ray.autoscaler.__file__).with_name("ray-schema.json")
    jsonschema.validate(config, json.loads(schema_path.read_text()))
    assert config["head_node_type"] in config["available_node_types"]
    assert config["available_node_types"]["head"]["resources"]["CPU"] == 0, "the head runs the driver only"
    workers = config["available_node_types"]["workers"]
    assert workers["min_workers"] >= 2, "shards spread over at least two machines"
    _no_inlined_secret(config)


def test_launcher_env_example_names_real_settings_and_holds_no_secret() -> None:
    example = _env_file(DEPLOY / "launcher" / "clickcash.env.example")
    assert set(example) <= set(env_names()) | RAY_ENV, set(example) - set(env_names()) - RAY_ENV
    assert all(example[name] == "" for name in SECRET_ENV), "secrets are left empty in the example"
    mounts = yaml.safe_load(LAUNCHER.read_text())["file_mounts"]
    assert "~/.clickcash/clickcash.env" in mounts.values(), "the env file comes from outside the repository"


def test_kuberay_manifests_are_well_formed() -> None:
    kustomization = yaml.safe_load((KUBERAY / "kustomization.yaml").read_text())
    docs = [d for r in kustomization["resources"] for d in _docs(KUBERAY / r)]
    kinds = {d["kind"]: d for d in docs}
    assert {"RayCluster", "RayJob", "Service"} <= set(kinds)
    cluster, job = kinds["RayCluster"], kinds["RayJob"]
    assert cluster["apiVersion"] == job["apiVersion"] == "ray.io/v1"
    assert cluster["spec"]["rayVersion"] == ray.__version__
    head = cluster["spec"]["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    for group in [head, *cluster["spec"]["workerGroupSpecs"]]:
        assert all(isinstance(v, str) for v in group["rayStartParams"].values()), "KubeRay wants strings"
    for group in cluster["spec"]["workerGroupSpecs"]:
        assert group["groupName"]
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        assert group["minReplicas"] >= 2, "shards spread over at least two nodes"
    for c in _containers(cluster):
        assert c["name"] and c["image"]
        assert c["resources"]["limits"]["cpu"], "Ray derives the node's CPUs from the limit"
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        assert env.get("RAY_max_direct_call_object_size") == str(
            load_settings().ray.max_inline_object_bytes
        ), "every Ray node inlines shard calls up to the size a local instance does"
    assert job["spec"]["clusterSelector"]["ray.io/cluster"] == cluster["metadata"]["name"]
    assert job["spec"]["entrypoint"].startswith("clickcash run --address auto")
    service = kinds["Service"]
    assert service["spec"]["selector"]["ray.io/cluster"] == cluster["metadata"]["name"]
    port = service["spec"]["ports"][0]
    assert port["port"] == load_settings().monitoring.metrics_port
    for doc in docs:
        _no_inlined_secret(doc)


def test_kuberay_secrets_come_from_the_secret_and_names_are_real_settings() -> None:
    kustomization = yaml.safe_load((KUBERAY / "kustomization.yaml").read_text())
    docs = [d for r in kustomization["resources"] for d in _docs(KUBERAY / r)]
    allowed = set(env_names()) | RAY_ENV
    seen_secret = set()
    for doc in docs:
        for c in _containers(doc):
            for env in c.get("env", []):
                assert env["name"] in allowed, env["name"]
                if env["name"] in SECRET_ENV:
                    assert "value" not in env, f"{env['name']} inlined"
                    assert env["valueFrom"]["secretKeyRef"]["name"] == SECRET_NAME
                    seen_secret.add(env["name"])
            for source in c.get("envFrom", []):
                assert source == {"configMapRef": {"name": "clickcash-config"}}
    assert seen_secret == SECRET_ENV
    (generator,) = kustomization["configMapGenerator"]
    assert generator["name"] == "clickcash-config"
    assert kustomization["generatorOptions"]["disableNameSuffixHash"] is True
    params = _env_file(KUBERAY / generator["envs"][0])
    assert set(params) <= allowed, set(params) - allowed
    assert not set(params) & SECRET_ENV, "secrets belong in the Secret, not the ConfigMap"


@pytest.mark.parametrize("env_file", [KUBERAY / "params.env", DEPLOY / "launcher" / "clickcash.env.example"])
def test_deployment_parameters_are_valid_settings(monkeypatch: pytest.MonkeyPatch, env_file: Path) -> None:
    for name, value in _env_file(env_file).items():
        if value and name.startswith("CLICKCASH_"):
            monkeypatch.setenv(name, value)
    # the secrets come from the Secret at deploy time (the settings refuse SCRAM without a password)
    monkeypatch.setenv("CLICKCASH_KAFKA__SASL_PASSWORD", "from-the-secret")
    settings = load_settings()
    assert settings.pipeline.shards == 16 and settings.pipeline.routers == 2
    assert settings.pipeline.required_cpus() <= 2 * 8, "fits the two minimum workers"
