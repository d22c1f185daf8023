"""deploy/k8s matches the code and Kubernetes: every object valid against the API's schemas
(kubernetes-validate, offline), every variable a real setting of the process it is given to,
every reference resolved, the probes on routes and ports that exist.

No cluster here: the manifests are checked, not applied. ``kubectl kustomize`` (offline) also
renders them, with and without the TLS component, where kubectl is installed.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import kubernetes_validate
import pytest
from pydantic_settings import BaseSettings

from inference_server.model_config import load_model_table
from inference_server.settings import ServerSettings
from rest_bridge.link.channels import parse_targets
from rest_bridge.routes.service import router
from rest_bridge.settings import BridgeSettings
from tests.utils import manifests as m
from tests.utils.procs import ROOT
from tools.settings_doc import setting_variables

K8S = ROOT / "deploy" / "k8s"
TLS = K8S / "grpc-tls"
# The oldest Kubernetes still widely run that has every field used here, and the newest schemas.
VERSIONS = ("1.29.0", "1.37.0")
SETTINGS: dict[str, type[BaseSettings]] = {"bridge": BridgeSettings, "inference": ServerSettings}
# Variables read by libraries rather than by our settings classes.
THIRD_PARTY = {
    "AWS_ENDPOINT_URL",  # boto3: the S3-compatible endpoint of GENSERVE_BLOB_URL
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "PGPASSWORD",  # libpq (psycopg): the password DATABASE_URL leaves out
    "HF_HOME",  # huggingface_hub: where checkpoints are downloaded
}


def _objects() -> list[m.Manifest]:
    """Every whole object: the base's and the TLS component's."""
    return m.resources(K8S) + m.resources(TLS)


def _variants() -> list[list[m.Manifest]]:
    """The objects as applied: from the files, or rendered by kubectl with and without TLS."""
    rendered = [m.render(K8S), m.render(K8S, (TLS,))]
    return [r for r in rendered if r is not None] or [_objects()]


def test_every_yaml_file_is_in_a_kustomization() -> None:
    listed = {K8S / name for name in m.kustomization(K8S)["resources"]}
    component = m.kustomization(TLS)
    assert component["kind"] == "Component"
    listed |= {TLS / name for name in component["resources"]}
    listed |= {TLS / patch["path"] for patch in component["patches"]}
    on_disk = {p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml"}
    assert on_disk == listed


@pytest.mark.parametrize("version", VERSIONS)
def test_every_object_is_valid_against_the_kubernetes_schemas(version: str) -> None:
    checked = 0
    for objects in [_objects(), *_variants()]:
        for obj in objects:
            kubernetes_validate.validate(obj, version, strict=True)
            checked += 1
    assert checked > 10


def test_every_variable_is_a_setting_of_its_process() -> None:
    for objects in [_objects(), *_variants()]:
        for workload, container in m.containers(objects):
            known = setting_variables(SETTINGS[container["name"]])
            variables = m.environment(container, objects)
            unknown = m.unknown_variables(variables, known, THIRD_PARTY)
            assert not unknown, f"{workload['metadata']['name']}: {unknown} are not settings"
    # The patches of the TLS component too.
    for patch in m.kustomization(TLS)["patches"]:
        for _, container in m.containers(m.load(TLS / patch["path"])):
            known = setting_variables(SETTINGS[container["name"]])
            assert not m.unknown_variables(m.environment(container, []), known, THIRD_PARTY)


def test_an_unknown_variable_is_caught() -> None:
    known = setting_variables(BridgeSettings)
    bridge = {"name": "bridge", "env": [{"name": "GENSERVE_FOO", "value": "1"}]}
    assert m.unknown_variables(m.environment(bridge, []), known, THIRD_PARTY) == ["GENSERVE_FOO"]
    # A server's setting is not the bridge's, a third-party variable must be named.
    other = {"name": "bridge", "env": [{"name": "GENSERVE_INFERENCE_PORT"}, {"name": "FOO"}]}
    unknown = m.unknown_variables(m.environment(other, []), known, THIRD_PARTY)
    assert unknown == ["FOO", "GENSERVE_INFERENCE_PORT"]
    # A GENSERVE_ variable is never let through as third-party.
    assert m.unknown_variables({"GENSERVE_FOO": None}, known, {"GENSERVE_FOO"}) == ["GENSERVE_FOO"]
    # DATABASE_URL is an alias of a bridge setting; from a missing ConfigMap it is an error.
    assert m.unknown_variables({"DATABASE_URL": None}, known, set()) == []
    with pytest.raises(LookupError):
        m.environment({"name": "bridge", "envFrom": [{"configMapRef": {"name": "nope"}}]}, [])


def test_paths_in_variables_are_mounted_volumes() -> None:
    for objects in _variants():
        for workload, container in m.containers(objects):
            volumes = {v["name"]: v for v in m.pod_spec(workload).get("volumes", [])}
            claims = {
                c["metadata"]["name"] for c in workload["spec"].get("volumeClaimTemplates", [])
            }
            mounts = {PurePosixPath(v["mountPath"]): v for v in container.get("volumeMounts", [])}
            for mount in mounts.values():
                assert mount["name"] in volumes or mount["name"] in claims, mount
            for name, value in m.environment(container, objects).items():
                if value and value.startswith("/"):
                    path = PurePosixPath(value)
                    under = [mp for mp in mounts if mp in path.parents]
                    assert under, f"{name}={value} is on no volume"
                    source = volumes.get(mounts[under[0]]["name"], {})
                    for kind, key in (("ConfigMap", "configMap"), ("Secret", "secret")):
                        if key in source:
                            ref = source[key].get("name") or source[key].get("secretName")
                            obj = m.named(objects, kind, ref)
                            assert obj is not None, ref
                            assert path.name in m.keys(obj), f"{name}: no {path.name} in {ref}"


def test_the_bridges_reach_the_headless_service() -> None:
    objects = _objects()
    bridge = next(c for _, c in m.containers(objects) if c["name"] == "bridge")
    targets = parse_targets(m.environment(bridge, objects)["GENSERVE_INFERENCE_TARGETS"] or "")
    namespace = m.kustomization(K8S)["namespace"]
    for target in targets:
        assert target.startswith("dns:///"), target
        host, port = target.removeprefix("dns:///").rsplit(":", 1)
        service_name, ns, *rest = host.split(".")
        assert (ns, rest) == (namespace, ["svc", "cluster", "local"]), host
        service = m.named(objects, "Service", service_name)
        assert service is not None and service["spec"]["clusterIP"] == "None"
        assert int(port) in {p["port"] for p in service["spec"]["ports"]}
        workload = m.named(objects, "StatefulSet", service_name)
        assert workload is not None and workload["spec"]["serviceName"] == service_name
        assert (
            service["spec"]["selector"].items()
            <= workload["spec"]["template"]["metadata"]["labels"].items()
        )


def test_probes_gpus_and_the_model_file(tmp_path: Path) -> None:
    objects = _objects()
    routes = {getattr(r, "path", None) for r in router.routes}
    assert {"/readyz", "/healthz"} <= routes
    for _, container in m.containers(objects):
        if container["name"] == "bridge":
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        else:
            env = m.environment(container, objects)
            port = int(env["GENSERVE_INFERENCE_PORT"] or 0)
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert container[probe]["grpc"]["port"] == port
            assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    models = m.named(objects, "ConfigMap", "genserve-models")
    assert models is not None
    path = tmp_path / "models.toml"
    path.write_text(models["data"]["models.toml"])
    deployed = load_model_table(ROOT / "deploy" / "models.toml")
    assert load_model_table(path).models == deployed.models


def test_the_pod_disruption_budgets_and_the_autoscaler_cover_their_pods() -> None:
    objects = _objects()
    workloads = [o for o in objects if o["kind"] in m.WORKLOADS]
    budgets = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    for workload in workloads:
        labels = workload["spec"]["template"]["metadata"]["labels"].items()
        assert any(b["spec"]["selector"]["matchLabels"].items() <= labels for b in budgets)
    hpa = next(o for o in objects if o["kind"] == "HorizontalPodAutoscaler")
    target = m.named(objects, hpa["spec"]["scaleTargetRef"]["kind"], "genserve-bridge")
    assert target is not None and hpa["spec"]["scaleTargetRef"]["name"] == "genserve-bridge"
