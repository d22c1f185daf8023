"""Reading Kubernetes manifests offline: the kustomization's files, pod specs, environments."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

Manifest = dict[str, Any]
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}


def load(path: Path) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def kustomization(folder: Path) -> Manifest:
    found: Manifest = yaml.safe_load((folder / "kustomization.yaml").read_text())
    return found


def resources(folder: Path) -> list[Manifest]:
    """The objects a kustomization (or component) lists under ``resources``, in its files."""
    return [
        doc for name in kustomization(folder).get("resources", []) for doc in load(folder / name)
    ]


def render(folder: Path, components: tuple[Path, ...] = ()) -> list[Manifest] | None:
    """``kubectl kustomize`` of ``folder`` with ``components`` added; None without kubectl."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    with tempfile.TemporaryDirectory(prefix="genserve-kustomize-") as tmp:
        here = Path(tmp)
        # kustomize takes relative paths only
        spec = {
            "resources": [os.path.relpath(folder, here)],
            "components": [os.path.relpath(c, here) for c in components],
        }
        (here / "kustomization.yaml").write_text(yaml.safe_dump(spec))
        out = subprocess.run(
            [kubectl, "kustomize", str(here)], capture_output=True, text=True, check=True
        ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def pod_spec(workload: Manifest) -> Manifest:
    spec: Manifest = workload["spec"]["template"]["spec"]
    return spec


def containers(objects: list[Manifest]) -> Iterator[tuple[Manifest, Manifest]]:
    """``(workload, container)`` for every container of every workload in ``objects``."""
    for obj in objects:
        if obj.get("kind") in WORKLOADS:
            spec = pod_spec(obj)
            for container in spec.get("initContainers", []) + spec.get("containers", []):
                yield obj, container


def named(objects: list[Manifest], kind: str, name: str) -> Manifest | None:
    for obj in objects:
        if obj.get("kind") == kind and obj["metadata"]["name"] == name:
            return obj
    return None


def keys(obj: Manifest) -> set[str]:
    """The keys of a ConfigMap's or Secret's data."""
    return set(obj.get("data") or {}) | set(obj.get("stringData") or {})


def environment(container: Manifest, objects: list[Manifest]) -> dict[str, str | None]:
    """The variables a container is given: ``env`` entries (their literal value, None when
    taken from elsewhere) and every key of the ConfigMaps and Secrets of ``envFrom``.

    Raises LookupError for a reference to an object or key that ``objects`` lacks.
    """
    found: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        for ref, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
            if ref in source:
                obj = named(objects, kind, source[ref]["name"])
                if obj is None:
                    raise LookupError(f"envFrom: no {kind} {source[ref]['name']}")
                found.update(dict.fromkeys(keys(obj)))
    for entry in container.get("env", []):
        for ref, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
            selector = (entry.get("valueFrom") or {}).get(ref)
            if selector is not None:
                obj = named(objects, kind, selector["name"])
                if obj is None or selector["key"] not in keys(obj):
                    raise LookupError(
                        f"{entry['name']}: no key {selector['key']} in {kind} {selector['name']}"
                    )
        found[entry["name"]] = entry.get("value")
    return found


def unknown_variables(
    variables: dict[str, str | None], settings: set[str], third_party: set[str]
) -> list[str]:
    """The variables that are neither a setting nor a named third-party variable; a
    ``GENSERVE_`` variable must be a setting."""
    return sorted(
        name
        for name in variables
        if name not in settings and (name.startswith("GENSERVE_") or name not in third_party)
    )
