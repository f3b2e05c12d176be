"""deploy/k8s/ validated offline.

The Dask kinds (DaskCluster, DaskJob) against the CRD schemas the dask-kubernetes wheel ships
(the operator's Helm chart CRDs), made strict the way `kubectl --validate=strict` is: a field
the schema does not define is an error, not silently pruned. The built-in kinds with
kubernetes-validate's strict schemas.
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import dask_kubernetes
import jsonschema
import kubernetes_validate
import pytest
import yaml

from ruinmap.cluster.compute.profiles import kubernetes_cluster_spec
from tests.support.repo import DEPLOY

K8S = DEPLOY / "k8s"
CRD_DIR = (Path(dask_kubernetes.__file__).parent / "operator" / "deployment" / "helm"
           / "dask-kubernetes-operator" / "crds")
DASK_KINDS = {"DaskCluster": "daskcluster.yaml", "DaskJob": "daskjob.yaml"}
# the oldest Kubernetes release still commonly run, and the newest the validator knows
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())


def _documents() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted(K8S.glob("*.yaml")):
        for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if doc is not None:
                yield f"{path.name}#{i}:{doc.get('kind')}", doc


DOCUMENTS = dict(_documents())


def _strict(schema: Any) -> Any:
    """`schema` with unknown properties refused wherever it lists properties."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@cache
def _crd_schema(kind: str) -> dict[str, Any]:
    crd = yaml.safe_load((CRD_DIR / DASK_KINDS[kind]).read_text())
    assert crd["spec"]["names"]["kind"] == kind
    [version] = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema = _strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
    # apiVersion/kind/metadata are checked by the API server itself, not the CRD schema
    schema["properties"]["apiVersion"] = {"const": f"{crd['spec']['group']}/v1"}
    schema["properties"]["kind"] = {"const": kind}
    schema["properties"]["metadata"] = {"type": "object"}
    schema["required"] = ["apiVersion", "kind", "metadata", "spec"]
    return schema


def _validate_dask(doc: dict[str, Any]) -> None:
    jsonschema.validate(doc, _crd_schema(doc["kind"]), cls=jsonschema.Draft7Validator)


def test_the_manifests_hold_every_kind_the_deployment_needs():
    kinds = sorted(doc["kind"] for doc in DOCUMENTS.values())
    assert kinds == sorted(["Namespace", "PersistentVolumeClaim", "ConfigMap", "Secret", "Secret",
                            "DaskCluster", "DaskJob", "Deployment", "Service"])
    assert {doc["metadata"].get("namespace") for doc in DOCUMENTS.values()
            if doc["kind"] != "Namespace"} == {"ruinmap"}


@pytest.mark.parametrize("name", [n for n, d in DOCUMENTS.items() if d["kind"] in DASK_KINDS])
def test_dask_resources_match_the_operator_crd(name):
    _validate_dask(DOCUMENTS[name])


def test_the_kubernetes_profile_daskcluster_matches_the_operator_crd():
    _validate_dask(kubernetes_cluster_spec())


def test_crd_validation_catches_a_misspelt_field():
    [cluster] = [d for d in DOCUMENTS.values() if d["kind"] == "DaskCluster"]
    broken = copy.deepcopy(cluster)
    broken["spec"]["worker"]["spec"]["containers"][0]["comand"] = ["dask", "worker"]
    with pytest.raises(jsonschema.ValidationError, match="comand"):
        _validate_dask(broken)
    broken = copy.deepcopy(cluster)
    broken["spec"]["worker"]["replicas"] = "two"
    with pytest.raises(jsonschema.ValidationError, match="'two' is not of type 'integer'"):
        _validate_dask(broken)


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("name", [n for n, d in DOCUMENTS.items() if d["kind"] not in DASK_KINDS])
def test_builtin_kinds_are_valid_strictly(name, version):
    kubernetes_validate.validate(DOCUMENTS[name], version, strict=True)


def test_strict_validation_catches_a_misspelt_field():
    [deployment] = [d for d in DOCUMENTS.values() if d["kind"] == "Deployment"]
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[0], strict=True)


def _by_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in DOCUMENTS.values() if d["kind"] == kind]


def test_the_service_reaches_the_daskcluster_scheduler():
    [cluster] = _by_kind("DaskCluster")
    [config] = _by_kind("ConfigMap")
    service_toml = config["data"]["service.toml"]
    settings = tomllib.loads(service_toml)
    name, namespace = cluster["metadata"]["name"], cluster["metadata"]["namespace"]
    # the operator names the scheduler Service <cluster>-scheduler
    assert settings["cluster"]["address"] == (
        f"tcp://{name}-scheduler.{namespace}.svc.cluster.local:8786")
    assert "auth" not in settings  # tokens live in the Secret
    assert set(settings) >= {"paths", "store", "cluster", "jobs"}
    tomllib.loads(config["data"]["job.toml"])


def test_the_service_config_joins_configmap_and_secret():
    [deployment] = _by_kind("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    [init] = pod["initContainers"]
    [main] = pod["containers"]
    assert main["args"][:1] == ["serve"]
    config_path = main["args"][main["args"].index("--config") + 1]
    assert init["command"][-1].endswith(f"> {config_path}")
    volumes = {v["name"]: v for v in pod["volumes"]}
    secrets = {d["metadata"]["name"]: d for d in _by_kind("Secret")}
    auth_secret = secrets[volumes["auth"]["secret"]["secretName"]]
    [config] = _by_kind("ConfigMap")
    assert volumes["config"]["configMap"]["name"] == config["metadata"]["name"]
    joined = tomllib.loads(config["data"]["service.toml"] + auth_secret["stringData"]["auth.toml"])
    assert joined["auth"]["tokens"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    [service] = _by_kind("Service")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_the_daskjob_runner_runs_ruinmap_on_its_own_scheduler():
    [job] = _by_kind("DaskJob")
    [runner] = job["spec"]["job"]["spec"]["containers"]
    assert "command" not in runner  # the image's entrypoint, ruinmap
    args = runner["args"]
    assert args[0] == "run"
    assert args[args.index("--scheduler") + 1] == "$(DASK_SCHEDULER_ADDRESS)"
    mounts = {m["mountPath"] for m in runner["volumeMounts"]}
    assert args[-1] in mounts
    for role in ("scheduler", "worker"):
        for container in job["spec"]["cluster"]["spec"][role]["spec"]["containers"]:
            assert container["command"][:2] == ["dask", role]


def test_the_readme_pins_the_operator_helm_chart():
    readme = (DEPLOY / "README.md").read_text()
    assert f"--version {dask_kubernetes.__version__}" in readme
    assert "helm install" in readme and "dask/dask-kubernetes-operator" in readme
