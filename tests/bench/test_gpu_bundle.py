"""The GPU bundle holds what a lent GPU's image lacks, and ``bench.gpu_check`` runs.

The lent machine has no network: the inference server and the GPU check must import from
the bundle (``tools/gpu_bundle.py``) and the image's packages
(``tools/gpu-image-packages.txt``) alone. Here that is simulated: a folder of links to the
installed distributions that are in one of the two lists, and a Python started without
its site-packages (``-S``) that sees that folder and the checkout, nothing else.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterable
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.utils.procs import ROOT
from tests.utils.scripts import run_module
from tools import gpu_bundle

IMPORTS = (
    "import inference_server.server, inference_server.servicer, bench.gpu_check\n"
    "bench.gpu_check.preflight()\n"
    "print('imported')\n"
)


def site_of(distributions: Iterable[str], folder: Path) -> Path:
    """A folder of links to the top-level files of the installed ``distributions``."""
    wanted = set(map(gpu_bundle.normalize, distributions))
    folder.mkdir()
    for dist in importlib.metadata.distributions():
        if gpu_bundle.normalize(dist.metadata["Name"]) not in wanted:
            continue
        for file in dist.files or ():
            top = file.parts[0]
            if top in ("..", "__pycache__") or top.endswith(".pth"):
                continue
            link = folder / top
            if not link.exists():
                link.symlink_to(Path(str(dist.locate_file(top))).resolve())
    return folder


def imports_with(distributions: Iterable[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    site = site_of(distributions, tmp_path / "site")
    path = os.pathsep.join([str(site), str(ROOT), str(ROOT / "clients")])
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    return subprocess.run(
        [sys.executable, "-S", "-c", IMPORTS],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=240,
    )


def requirements_of(names: set[str]) -> set[str]:
    """What the installed versions of ``names`` require, transitively (extras aside)."""
    found = set(names)
    todo = list(names)
    while todo:
        try:
            requires = importlib.metadata.requires(todo.pop()) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for text in requires:
            req = Requirement(text)
            name = gpu_bundle.normalize(req.name)
            if name not in found and (req.marker is None or req.marker.evaluate({"extra": ""})):
                found.add(name)
                todo.append(name)
    return found


def allowed(bundle: Iterable[str]) -> set[str]:
    """The image's distributions, and the bundle's.

    The image's are taken with what their versions installed here require (huggingface-hub
    2 here needs httpx2, the image's 1.33 httpx), but never a distribution the bundle
    carries: that one must come from the bundle.
    """
    image = requirements_of({*gpu_bundle.image_packages(), *gpu_bundle.FALLBACK})
    return (image - set(map(gpu_bundle.normalize, gpu_bundle.BUNDLE))) | set(bundle)


def test_every_dependency_is_bundled_in_the_image_or_left_out_with_a_reason() -> None:
    assert gpu_bundle.unclassified() == []
    image = gpu_bundle.image_packages()
    assert image["torch"] == "2.11.0" and image["transformers"] == "5.17.0"
    bundled = set(map(gpu_bundle.normalize, gpu_bundle.BUNDLE))
    assert not bundled & set(image), "the bundle carries nothing the image has"
    assert not bundled & set(map(gpu_bundle.normalize, gpu_bundle.LEFT_OUT))


def test_the_bundle_list_pins_what_constraints_pins() -> None:
    listed = dict(line.split("==") for line in gpu_bundle.bundle_list())
    pins = gpu_bundle.pins()
    assert listed["diffusers"] == pins["diffusers"]
    assert {gpu_bundle.normalize(n) for n in listed} >= {"diffusers", "pydantic", "torchao"}
    assert not {"fastapi", "sqlmodel", "boto3", "av"} & set(listed)


def test_the_server_and_the_gpu_check_import_from_the_bundle_and_the_image(
    tmp_path: Path,
) -> None:
    run = imports_with(allowed(gpu_bundle.BUNDLE), tmp_path)
    assert run.returncode == 0 and "imported" in run.stdout, run.stderr[-4000:]


def test_a_bundle_without_diffusers_fails_the_same_check(tmp_path: Path) -> None:
    bundle = [name for name in gpu_bundle.BUNDLE if name != "diffusers"]
    run = imports_with(allowed(bundle), tmp_path)
    assert run.returncode != 0
    assert "No module named 'diffusers'" in run.stderr, run.stderr[-4000:]


@pytest.mark.server  # serves a model over gRPC (the batching row)
def test_gpu_check_at_a_small_scale_prints_its_table(tmp_path: Path) -> None:
    args = ["--device", "cpu", "--scale", "small", "--only", "sdxl", "turns"]
    out = run_module("bench.gpu_check", *args, "--out", str(tmp_path), timeout=240)
    lines = {
        (row, figure): rest
        for row, figure, rest in re.findall(r"^\| (\S+) \| ([^|]+?) \| (.*)$", out, re.MULTILINE)
    }
    for name in ("sdxl", "turns"):  # the turns row: two families under a one-model budget
        given = [rest for (row, _figure), rest in lines.items() if row == name]
        assert len(given) == 2, out
        for rest in given:
            per_second = rest.split(" | ")[0]
            assert float(per_second) > 0, out
    assert (tmp_path / "gpu-check.md").read_text() in out
    figures = json.loads((tmp_path / "gpu-check.json").read_text())["figures"]
    assert [f["row"] for f in figures] == ["sdxl", "sdxl", "turns", "turns"]


def wheel(folder: Path, name: str, version: str, requires: Iterable[str] = ()) -> Path:
    """A wheel file holding only its METADATA."""
    path = folder / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    lines = [f"Name: {name}", f"Version: {version}", *(f"Requires-Dist: {r}" for r in requires)]
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{name}-{version}.dist-info/METADATA", "\n".join(lines) + "\n")
    return path


def test_an_image_package_older_than_genserve_accepts_comes_from_the_fallbacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheels = {
        "grpcio-health-checking": wheel(tmp_path, "grpcio-health-checking", "1.85.1",
                                        ["grpcio>=1.85.1", "protobuf<8,>=7.35.1"]),
        "grpcio": wheel(tmp_path, "grpcio", "1.85.3"),
    }  # fmt: skip
    found = {"grpcio": "1.80.0", "protobuf": "7.36.0"}
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda n: found.get(n) or real(n))
    checks = [c for c in gpu_bundle.image_checks(wheels) if c.wanted_by != "genserve"]
    assert [(c.requirement, c.ok, c.fallback) for c in checks] == [
        ("grpcio>=1.85.1", False, wheels["grpcio"]),
        ("protobuf<8,>=7.35.1", True, None),
    ]
