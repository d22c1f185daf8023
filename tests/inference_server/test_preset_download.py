"""A preset really downloaded and served: a local Hugging Face Hub stands in for the real one.

The Hub (``tests/utils/hub.py``) serves the small random-weight build of SDXL-Turbo's
architecture (``inference_server/tiny/sdxl.py`` with Turbo's scheduler) under the preset's
own repository id, ``stabilityai/sdxl-turbo``; ``HF_ENDPOINT`` points at it and ``HF_HOME``
at a temporary folder. The product code is the one run against the real Hub: the same
``huggingface_hub`` and diffusers calls, the same commands.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from inference_server.presets import PRESETS, preset_entry
from tests.utils.hub import Hub, repo_from_folder
from tests.utils.lanes import needs
from tests.utils.procs import ROOT, free_port
from tests.utils.terminal import run_on_terminal

pytestmark = pytest.mark.server

TURBO = "stabilityai/sdxl-turbo"


@pytest.fixture(scope="module")
def turbo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SDXL-Turbo's architecture at a small scale with random weights, saved as the Hub has it."""
    from diffusers import EulerAncestralDiscreteScheduler

    from inference_server.tiny import sdxl

    folder = tmp_path_factory.mktemp("turbo") / "sdxl-turbo"
    sdxl.build(
        folder,
        scheduler=EulerAncestralDiscreteScheduler(
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            timestep_spacing="trailing",
        ),
    )
    return folder


@pytest.fixture()
def hub(turbo_folder: Path) -> Iterator[Hub]:
    needs("server", "a local Hugging Face Hub")
    served = Hub()
    served.add(repo_from_folder(TURBO, turbo_folder))
    gated = turbo_folder.parent / "gated"
    gated.mkdir(exist_ok=True)
    (gated / "model_index.json").write_text('{"_class_name": "FluxKontextPipeline"}')
    served.add(repo_from_folder(preset_entry(PRESETS["flux-kontext-dev"])["source"], gated, True))
    served.start()
    yield served
    served.stop()


def _env(hub: Hub, home: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, **hub.env(home), **extra}
    env.pop("HF_TOKEN", None)
    return env


def _pull(name: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "genserve.cli", "models", "pull", name],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_pull_downloads_a_preset_into_the_hub_cache_with_a_progress_bar(
    hub: Hub, turbo_folder: Path, tmp_path: Path
) -> None:
    home = tmp_path / "hf"
    env = _env(hub, home)
    drawn = run_on_terminal(
        [sys.executable, "-m", "genserve.cli", "models", "pull", "sdxl-turbo"],
        env,
        ROOT,
        timeout=120,
    )
    text = drawn.text
    assert drawn.returncode == 0, text
    assert f"downloading {TURBO} into {home / 'hub'}" in text
    bar = [line for line in text.splitlines() if line.startswith("Fetching ")]
    assert bar and "100%" in bar[-1], text  # the bar, drawn until done
    assert f"sdxl-turbo: in the Hugging Face cache ({home / 'hub'})" in text
    assert "Traceback" not in text

    # The hub cache's layout: refs/main names the commit, snapshots link to blobs.
    repo = hub.repos[TURBO]
    cached = home / "hub" / "models--stabilityai--sdxl-turbo"
    assert (cached / "refs" / "main").read_text().strip() == repo.sha
    snapshot = cached / "snapshots" / repo.sha
    for path, item in repo.files.items():
        if path.endswith(".safetensors"):
            link = snapshot / path
            assert link.is_symlink(), path
            assert link.resolve() == (cached / "blobs" / item.sha256).resolve()
            assert link.read_bytes() == (turbo_folder / path).read_bytes()
    index = (snapshot / "model_index.json").read_bytes()
    assert index == (turbo_folder / "model_index.json").read_bytes()
    # Weights came as the real Hub sends them: a redirect from /resolve, the bytes from the CDN.
    weights = [p for p in repo.files if p.endswith(".safetensors")]
    assert len(hub.asked("HEAD", r"/resolve/.*\.safetensors$")) == len(weights)
    assert len(hub.asked("GET", r"^cdn:/blobs/")) == len(weights)

    # Pulled again: nothing downloaded; offline: served from the cache alone.
    again = _pull("sdxl-turbo", env)
    assert again.returncode == 0, again.stderr
    assert len(hub.asked("GET", r"^cdn:/blobs/")) == len(weights)
    assert "downloading" not in again.stderr
    asked = len(hub.requests)
    offline = _pull("sdxl-turbo", _env(hub, home, HF_HUB_OFFLINE="1"))
    assert offline.returncode == 0, offline.stderr
    assert len(hub.requests) == asked


@pytest.mark.parametrize(
    ("preset", "says"),
    [
        (
            "flux-kontext-dev",
            "the repository is gated; accept its terms at {endpoint}/{repo} and set HF_TOKEN",
        ),
        ("sdxl", "no such repository, or it is private (set HF_TOKEN)"),
    ],
    ids=["gated", "missing"],
)
def test_a_gated_or_missing_repository_fails_in_one_line(
    hub: Hub, tmp_path: Path, preset: str, says: str
) -> None:
    repo = preset_entry(PRESETS[preset])["source"]
    started = time.monotonic()
    done = _pull(preset, _env(hub, tmp_path / "hf"))
    took = time.monotonic() - started
    assert done.returncode == 1 and took < 60
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"preset {preset}: cannot fetch {repo}" in lines[0]
    assert says.format(endpoint=hub.endpoint, repo=repo) in lines[0]
    assert "Traceback" not in done.stdout + done.stderr
    assert hub.asked("GET", f"^hub:/api/models/{repo}")  # the answer came from this Hub


def test_up_with_a_preset_downloads_and_serves_it_under_the_documents_name(
    hub: Hub, tmp_path: Path, model_cache: Path
) -> None:
    port, grpc_port = free_port(), free_port()
    env = _env(
        hub,
        tmp_path / "hf",
        GENSERVE_DATA_DIR=str(tmp_path / "data"),
        GENSERVE_INFERENCE_CACHE_DIR=str(model_cache),
    )
    for name in ("DATABASE_URL", "GENSERVE_PUBLIC_BASE_URL", "GENSERVE_MODELS_FILE"):
        env.pop(name, None)
    errors = tmp_path / "up.err"
    with errors.open("wb") as err:
        up = subprocess.Popen(
            [
                *(sys.executable, "-m", "genserve.cli", "up", "--preset", "sdxl-turbo"),
                *("--port", str(port), "--grpc-port", str(grpc_port), "--json"),
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
        try:
            assert up.stdout is not None
            first = up.stdout.readline()
            assert first, errors.read_text()[-3000:]
            started = json.loads(first)
            key = started["api_key"]
            assert (started["port"], started["grpc_port"]) == (port, grpc_port)
            assert started["data_dir"] == str(tmp_path / "data")
            assert Path(started["key_file"]).stat().st_mode & 0o077 == 0  # only its user reads it
            served = {m["name"]: m for m in started["models"]}
            assert served["nano-banana"]["kind"] == "image" and served["nano-banana"]["default"]
            assert f"downloading {TURBO}" in errors.read_text()
            answer = httpx.post(
                f"{started['base_url']}/api/v1/images",
                headers={"Authorization": f"Bearer {key}"},
                json={"prompt": "a lighthouse at dusk", "output_format": "png"},
                timeout=300,
            )
            assert answer.status_code == 200, answer.text
            url = answer.json()["data"]["images"][0]["url"]
            picture = httpx.get(url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
            assert picture.status_code == 200
            assert Image.open(io.BytesIO(picture.content)).size == (512, 512)  # Turbo's size
            routes: list[str] = []  # --json: a JSON line per request, nothing else
            while "/api/v1/images" not in routes and len(routes) < 5:
                routes.append(json.loads(up.stdout.readline())["route"])
            assert "/api/v1/images" in routes, routes
        finally:
            up.send_signal(signal.SIGTERM)
            up.wait(60)
    cached = tmp_path / "hf" / "hub" / "models--stabilityai--sdxl-turbo" / "snapshots"
    assert (cached / hub.repos[TURBO].sha / "model_index.json").exists()
