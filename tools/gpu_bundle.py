"""The GPU bundle: wheels of what the lent GPU machine's image lacks, carried in the checkout.

A lent H100 or H200 has no network, Python 3.12 and torch 2.11 (CUDA 13) among the
packages of its image (``tools/gpu-image-packages.txt``), but not diffusers, pydantic
or torchao. ``make gpu-bundle`` runs ``python -m tools.gpu_bundle download`` here: the
Python 3.12 manylinux wheels of :data:`BUNDLE` (what the inference server and
``bench.gpu_check`` import that the image lacks) and of :data:`FALLBACK` (packages the
image has, carried in case its version is older than genserve accepts), at the versions
``constraints.txt`` pins, into the ignored folder ``.gpu-bundle/`` (at most
:data:`LIMIT_MIB` MiB in all). ``make gpu-check`` runs ``python3 -m tools.gpu_bundle
install`` there: it checks every version genserve needs against what the image has,
installs the bundle (and only the fallbacks that are needed) with ``pip --no-index
--no-deps`` into a fresh target folder, and prints what it found.

The bridge's web and database stack and S3 (:data:`LEFT_OUT`) stay behind: neither the
inference server nor the GPU check imports them. genserve itself and genserve-client
travel as source in the checkout (``PYTHONPATH=.gpu-target:.:clients``).

Standard library only (``packaging``, which the image and pip both carry, for version
checks): this runs on the image before anything is installed.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
import time
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BUNDLE_DIR = ROOT / ".gpu-bundle"
TARGET_DIR = ROOT / ".gpu-target"
IMAGE_FILE = Path(__file__).with_name("gpu-image-packages.txt")
LIMIT_MIB = 50
PYTHON_VERSION = "3.12"
PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_24_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
)

BUNDLE: dict[str, str] = {
    "diffusers": "every pipeline (inference_server.loader, bench.published)",
    "pydantic": "the server's settings and model table",
    "pydantic-core": "pydantic",
    "pydantic-settings": "ServerSettings (inference_server.settings)",
    "python-dotenv": "pydantic-settings imports it",
    "annotated-types": "pydantic",
    "typing-inspection": "pydantic",
    "grpcio-health-checking": "the server's health service (inference_server.server)",
    "grpcio-reflection": "the server's reflection service (inference_server.server)",
    "torchao": "quantize = 'fp8' (inference_server.speed), the FP8 row",
    "trimesh": "the servicer imports the 3D plans (inference_server.plans.mesh)",
    "ftfy": "Wan's image-to-video pipeline cleans every prompt with it (diffusers 0.42)",
    "wcwidth": "ftfy",
}
"""Distributions the image lacks that the inference server or the GPU check imports."""

FALLBACK: dict[str, str] = {
    "grpcio": "the stubs need 1.85.1 or later (GRPC_GENERATED_VERSION)",
    "protobuf": "the stubs need 7.35.1 or later (their gencode version)",
    "typing-extensions": "pydantic-core needs 4.14.1 or later",
}
"""The image's own packages, carried in case its version is older than genserve needs:
installed only then."""

LEFT_OUT: dict[str, str] = {
    "genserve-client": "travels as source (clients/)",
    "fastapi": "the bridge",
    "fastapi-offline": "the bridge",
    "uvicorn": "the bridge",
    "sqlmodel": "the bridge's database",
    "alembic": "the bridge's database",
    "psycopg": "the bridge's database",
    "redis": "the bridge's rate limits",
    "limits": "the bridge's rate limits",
    "argon2-cffi": "the bridge's passwords",
    "python-multipart": "the bridge's uploads",
    "boto3": "S3 blob store (the bridge's storage)",
    "av": "MP4 encoding: a 34 MiB wheel (the bundle would pass 50 MiB), imported only when a "
    "file is written or read; the video row times denoising and decoding, not encoding",
}
"""genserve's dependencies that do not travel, and why."""

UNUSED: dict[str, str] = {
    "importlib-metadata": "diffusers declares it, but on Python 3.8 and later imports the "
    "standard library's importlib.metadata",
}
"""Requirements of bundled wheels that nothing imports on Python 3.12: neither carried nor
checked."""


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def image_packages(path: Path = IMAGE_FILE) -> dict[str, str | None]:
    """The image's distributions (normalized names) and the versions recorded for them."""
    found: dict[str, str | None] = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            found[normalize(name)] = version or None
    return found


def pins(path: Path = ROOT / "constraints.txt") -> dict[str, str]:
    """``constraints.txt``'s versions: the bundle carries what the CPU install here runs."""
    found = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            found[normalize(name)] = version.strip()
    return found


def bundle_list(names: dict[str, str] | None = None) -> list[str]:
    """``name==version`` of every wheel ``make gpu-bundle`` downloads (bundle and fallbacks)."""
    pinned = pins()
    wanted = [*(names if names is not None else BUNDLE), *FALLBACK]
    missing = [n for n in wanted if normalize(n) not in pinned]
    if missing:
        raise SystemExit(f"constraints.txt pins no version of {', '.join(missing)}")
    return [f"{n}=={pinned[normalize(n)]}" for n in wanted]


def project_requirements() -> list[str]:
    """pyproject.toml's dependencies, as written."""
    with (ROOT / "pyproject.toml").open("rb") as fh:
        deps: list[str] = tomllib.load(fh)["project"]["dependencies"]
    return deps


def requirement_name(requirement: str) -> str:
    found = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert found, requirement
    return normalize(found.group(1))


def unclassified() -> list[str]:
    """pyproject dependencies neither in the image, the bundle, the fallbacks nor left out."""
    known = {*image_packages(), *map(normalize, BUNDLE), *map(normalize, FALLBACK)}
    known |= set(map(normalize, LEFT_OUT))
    return [r for r in project_requirements() if requirement_name(r) not in known]


def mib(paths: list[Path]) -> float:
    return sum(p.stat().st_size for p in paths) / 2**20


def download(folder: Path) -> int:
    """``make gpu-bundle``: the wheels into ``folder`` (stale ones removed); fails over the
    size limit or where a dependency is unclassified."""
    strays = unclassified()
    if strays:
        print(f"classify these in tools/gpu_bundle.py first: {', '.join(strays)}")
        return 1
    wanted = bundle_list()
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
    cmd += ["--only-binary=:all:", "--python-version", PYTHON_VERSION, "--implementation", "cp"]
    for platform in PLATFORMS:
        cmd += ["--platform", platform]
    subprocess.run([*cmd, "--dest", str(folder), *wanted], check=True)
    keep = {normalize(w.split("==")[0]) + "==" + w.split("==")[1] for w in wanted}
    wheels = []
    for wheel in sorted(folder.glob("*.whl")):
        name, version = wheel_name(wheel)
        if f"{name}=={version}" in keep:
            wheels.append(wheel)
        else:
            wheel.unlink()  # from an earlier list
    size = mib(wheels)
    for wheel in wheels:
        print(f"{wheel.stat().st_size / 2**20:7.2f} MiB  {wheel.name}")
    print(f"{size:7.2f} MiB  in {len(wheels)} wheels ({folder})")
    if size > LIMIT_MIB:
        print(f"over the {LIMIT_MIB} MiB limit")
        return 1
    return 0


def wheel_name(wheel: Path) -> tuple[str, str]:
    """A wheel's distribution (normalized) and version, from its file name."""
    name, version = wheel.name.split("-")[:2]
    return normalize(name), version


def wheel_requirements(wheel: Path) -> list[str]:
    """A wheel's ``Requires-Dist`` lines."""
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        text = zf.read(meta).decode()
    return [
        line.split(":", 1)[1].strip()
        for line in text.splitlines()
        if line.startswith("Requires-Dist:")
    ]


def _requirement() -> Any:
    """``packaging``'s Requirement: the image's own, else pip's copy."""
    try:
        from packaging.requirements import Requirement
    except ImportError:
        from pip._vendor.packaging.requirements import (  # type: ignore[assignment,no-redef]
            Requirement,
        )
    return Requirement


@dataclass
class Check:
    """One requirement on a package the image should have, and what was found there."""

    requirement: str
    wanted_by: str
    found: str | None
    ok: bool
    fallback: Path | None = None


def image_checks(wheels: dict[str, Path]) -> list[Check]:
    """Each requirement (genserve's, the bundle's) on a package outside the bundle, checked
    against the running Python's installed version."""
    Requirement = _requirement()
    bundled = set(map(normalize, BUNDLE))
    left_out = set(map(normalize, [*LEFT_OUT, *UNUSED]))
    sources: list[tuple[str, str]] = [(r, "genserve") for r in project_requirements()]
    for name, wheel in wheels.items():
        if name in bundled:
            sources += [(r, name) for r in wheel_requirements(wheel)]
    checks = []
    for text, who in sources:
        req = Requirement(text)
        name = normalize(req.name)
        if name in bundled or name in left_out:
            continue
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        try:
            found: str | None = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found = None
        ok = found is not None and req.specifier.contains(found, prereleases=True)
        checks.append(Check(text, who, found, ok, None if ok else wheels.get(name)))
    return checks


def install(folder: Path, target: Path, report: Path | None) -> int:
    """``make gpu-check``'s first step, on the image: the bundle into a fresh ``target``."""
    started = time.perf_counter()
    wheels = {wheel_name(w)[0]: w for w in sorted(folder.glob("*.whl"))}
    missing = [n for n in BUNDLE if normalize(n) not in wheels]
    if missing:
        print(f"{folder} lacks {', '.join(missing)}: run `make gpu-bundle` before the lease")
        return 1
    checks = image_checks(wheels)
    chosen = [wheels[normalize(n)] for n in BUNDLE]
    chosen += sorted({c.fallback for c in checks if c.fallback is not None})
    shutil.rmtree(target, ignore_errors=True)
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps"]
    cmd += ["--no-compile"]  # each module compiled when first imported: only those used
    cmd += ["--disable-pip-version-check", "--target", str(target), *map(str, chosen)]
    code = subprocess.run(cmd).returncode
    lines = [f"python {sys.version.split()[0]} at {sys.executable}"]
    for c in checks:
        state = "ok" if c.ok else ("fallback from the bundle" if c.fallback else "NOT MET")
        lines.append(f"{c.requirement} ({c.wanted_by}): found {c.found or 'nothing'}, {state}")
    seconds = time.perf_counter() - started
    lines.append(
        f"installed {len(chosen)} wheels ({mib(chosen):.1f} MiB) into {target} in {seconds:.1f} s"
        + ("" if code == 0 else f"; pip exited {code}")
    )
    print("\n".join(lines))
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps({"lines": lines, "pip_exit": code}, indent=1))
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.gpu_bundle", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="print the wheels the bundle holds, name==version")
    down = sub.add_parser("download", help="download the wheels (here, with network)")
    down.add_argument("folder", type=Path, nargs="?", default=BUNDLE_DIR)
    inst = sub.add_parser("install", help="install them into a fresh folder (on the image)")
    inst.add_argument("folder", type=Path, nargs="?", default=BUNDLE_DIR)
    inst.add_argument("--target", type=Path, default=TARGET_DIR)
    inst.add_argument("--report", type=Path, help="also write what was found here (JSON)")
    args = parser.parse_args(argv)
    if args.command == "list":
        print("\n".join(bundle_list()))
        return 0
    if args.command == "download":
        return download(args.folder)
    return install(args.folder, args.target, args.report)


if __name__ == "__main__":
    raise SystemExit(main())
