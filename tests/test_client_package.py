"""genserve-client installs on its own: a fresh virtual environment gets the stubs, the
webhook signatures, the SDK and the ``genserve`` command, and none of the servers or their
weight."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.utils.procs import ROOT

CLIENT_MODULES = (
    "genserve.inference.v1.inference_pb2",
    "genserve.inference.v1.inference_pb2_grpc",
    "genserve.webhooks",
    "genserve.cli",
    "genserve.client_cli",
    "genserve.client",
    "genserve.async_client",
    "genserve.errors",
    "genserve.results",
    "genserve.config",
    "genserve.progress",
)
SERVER_SIDE = (
    "torch",
    "diffusers",
    "fastapi",
    "sqlmodel",
    "rest_bridge",
    "storage",
    "inference_server",
    "rich",  # only with the [cli] extra
    "pydantic",
)
PROBE = f"""
import importlib, importlib.util, json, pkgutil
import genserve
modules = sorted(m.name for m in pkgutil.walk_packages(genserve.__path__, "genserve."))
for name in modules:
    importlib.import_module(name)
present = [n for n in {SERVER_SIDE!r} if importlib.util.find_spec(n) is not None]
print(json.dumps({{"modules": modules, "present": present}}))
"""
GOOD_KEY = "gsk_client_package_test"
SDK_PROBE = """
import json, importlib.metadata
import genserve
models = [m.name for m in genserve.Client().models.list()]
try:
    genserve.Client(api_key="gsk_wrong").models.list()
except genserve.AuthenticationError as err:
    error = [type(err).__name__, err.code, err.request_id]
extras = [r for r in importlib.metadata.requires("genserve-client") if "extra" in r]
print(json.dumps({"models": models, "error": error, "extras": extras}))
"""


def _source_modules() -> set[str]:
    """Every module under clients/genserve, each of which the distribution must carry."""
    names = set()
    for path in (ROOT / "clients" / "genserve").rglob("*.py"):
        parts = path.relative_to(ROOT / "clients").with_suffix("").parts
        names.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names - {"genserve"}


def _pyenv_newest() -> Path | None:
    """The newest pyenv Python 3.12 or 3.13, when pyenv has one."""
    root = os.environ.get("PYENV_ROOT")
    if root is None and shutil.which("pyenv"):
        done = subprocess.run(["pyenv", "root"], capture_output=True, text=True, timeout=30)
        root = done.stdout.strip() or None
    versions = Path(root or Path.home() / ".pyenv") / "versions"
    found: list[tuple[tuple[int, int, int], Path]] = []
    for folder in versions.glob("3.1*"):
        match = re.fullmatch(r"3\.(12|13)\.(\d+)", folder.name)
        python = folder / "bin" / "python3"
        if match and python.exists():
            found.append(((3, int(match[1]), int(match[2])), python))
    return max(found)[1] if found else None


def _pyenv_310() -> Path | None:
    """A pyenv Python 3.10, the oldest the client supports."""
    root = os.environ.get("PYENV_ROOT")
    if root is None and shutil.which("pyenv"):
        done = subprocess.run(["pyenv", "root"], capture_output=True, text=True, timeout=30)
        root = done.stdout.strip() or None
    versions = Path(root or Path.home() / ".pyenv") / "versions"
    found = sorted(versions.glob("3.10.*"))
    pythons = [f / "bin" / "python3" for f in found if (f / "bin" / "python3").exists()]
    return pythons[-1] if pythons else None


def _interpreter(which: str) -> str:
    if which == "python3.11":
        return shutil.which("python3.11") or sys.executable
    if which == "pyenv-3.10":
        oldest = _pyenv_310()
        if oldest is None:
            pytest.skip("pyenv has no Python 3.10 (looked under `pyenv root`/versions)")
        return str(oldest)
    newest = _pyenv_newest()
    if newest is None:
        pytest.skip("pyenv has no Python 3.12 or 3.13 (looked under `pyenv root`/versions)")
    return str(newest)


def _clean_env() -> dict[str, str]:
    """This process's environment without what would let the venv see the project's."""
    drop = {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PYTHONSTARTUP"}
    return {k: v for k, v in os.environ.items() if k not in drop}


CATALOGUE = {
    "success": True,
    "data": {
        "models": [
            {"name": "nano-banana", "kind": "image", "default": True},
            {"name": "ltx-2", "kind": "video", "default": False},
        ]
    },
}
REFUSAL = {
    "success": False,
    "error": "Invalid or missing API key.",
    "code": "invalid_api_key",
    "request_id": "req_test",
}


class _Catalogue(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        good = self.headers.get("Authorization") == f"Bearer {GOOD_KEY}"
        status, body = (200, CATALOGUE) if good else (401, REFUSAL)
        payload = json.dumps(body).encode() if self.path == "/api/v1/models" else b"{}"
        self.send_response(status if self.path == "/api/v1/models" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def catalogue() -> Iterator[str]:
    """A stand-in bridge answering GET /api/v1/models in the contract's envelope."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Catalogue)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("which", ["pyenv-3.10", "python3.11", "pyenv-newest"])
def test_the_client_installs_alone(which: str, tmp_path: Path, catalogue: str) -> None:
    python = _interpreter(which)
    env = _clean_env()
    venv = tmp_path / "venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True, env=env, timeout=60)
    # A copy outside the checkout: the build can reach nothing but the clients folder.
    source = tmp_path / "clients"
    shutil.copytree(
        ROOT / "clients",
        source,
        ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"),
    )
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(source)]
    installed = subprocess.run(pip, env=env, cwd=tmp_path, capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args,
            env={**env, **extra},
            cwd=tmp_path,  # not the checkout, whose packages `python -c` would see
            capture_output=True,
            text=True,
            timeout=60,
        )

    probe = run(str(venv / "bin" / "python"), "-c", PROBE)
    assert probe.returncode == 0, probe.stderr
    found = json.loads(probe.stdout)
    assert found["present"] == [], "server-side packages in the client's environment"
    assert set(found["modules"]) == _source_modules(), "a module of clients/genserve not packaged"
    assert set(CLIENT_MODULES) <= set(found["modules"])

    genserve = str(venv / "bin" / "genserve")
    helped = run(genserve, "--help")
    assert helped.returncode == 0, helped.stderr
    assert re.search(r"^\s+models\s", helped.stdout, re.M), helped.stdout
    assert "accounts" not in helped.stdout
    assert helped.stderr == ""

    up = run(genserve, "up")
    assert up.returncode == 2 and "come with the server install" in up.stderr, up.stderr

    listed = run(genserve, "models", GENSERVE_BASE_URL=catalogue, GENSERVE_API_KEY=GOOD_KEY)
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()]
    assert rows == [
        ["name", "kind", "default", "price", "accepts"],
        ["nano-banana", "image", "yes"],
        ["ltx-2", "video"],
    ]

    refused = run(genserve, "models", "--base-url", catalogue, GENSERVE_API_KEY="gsk_wrong")
    assert refused.returncode == 1
    assert refused.stderr.splitlines() == [
        "genserve: invalid_api_key: Invalid or missing API key. (request_id req_test)",
        "genserve: set GENSERVE_API_KEY, or run `genserve login`",
    ]
    assert "Traceback" not in refused.stdout + refused.stderr

    # The SDK, with the extra that brings the progress bar declared but not installed.
    sdk = run(
        str(venv / "bin" / "python"),
        "-c",
        SDK_PROBE,
        GENSERVE_BASE_URL=catalogue,
        GENSERVE_API_KEY=GOOD_KEY,
        XDG_CONFIG_HOME=str(tmp_path / "xdg"),
    )
    assert sdk.returncode == 0, sdk.stderr
    assert json.loads(sdk.stdout) == {
        "models": ["nano-banana", "ltx-2"],
        "error": ["AuthenticationError", "invalid_api_key", "req_test"],
        "extras": ['rich>=13; extra == "cli"'],
    }
