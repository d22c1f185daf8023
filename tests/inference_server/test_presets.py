"""Presets: every real-size family of examples/models/ served in one command, or one line why not.

No weights can be fetched here (no network): the refusals are tested for real, bounded by
a timeout; the table a preset serves is checked by the server's own model-file reader.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from inference_server.model_config import load_model_table
from inference_server.presets import EXAMPLES, PRESETS, models_toml, preset_models
from tests.utils.procs import ROOT, free_port


def genserve(*args: str, **env: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "genserve.cli", *args],
        env={**os.environ, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done, time.monotonic() - started


def test_every_example_family_is_a_preset() -> None:
    assert set(PRESETS) == {p.stem for p in EXAMPLES.glob("*.toml")}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_a_preset_serves_its_family_under_the_documents_name(name: str, tmp_path: Path) -> None:
    preset = PRESETS[name]
    path = tmp_path / "models.toml"
    path.write_text(models_toml(preset_models(preset)))
    table = load_model_table(path)
    served = table.default(preset.kind)  # type: ignore[arg-type]
    assert served is not None and served.name == preset.served_as
    assert not served.source.startswith("builtin:")
    assert {m.kind for m in table.models} == {"image", "video", "3d"}  # other kinds built in
    assert sum(1 for m in table.models if m.default) == 3


def test_presets_are_listed_with_the_memory_each_needs() -> None:
    done, _ = genserve("models", "presets")
    assert done.returncode == 0, done.stderr
    for preset in PRESETS.values():
        line = next(x for x in done.stdout.splitlines() if x.startswith(preset.name + " "))
        assert f"{preset.gpu_gb} GB" in line and preset.served_as in line
    listed = json.loads(genserve("models", "presets", "--json")[0].stdout)
    assert listed[0]["repository"] == "stabilityai/sdxl-turbo"
    assert {"gpu_memory_gb", "weights_gb", "served_as"} <= set(listed[0])


@pytest.mark.parametrize("offline", ["1", ""])
def test_a_preset_that_cannot_be_fetched_fails_in_one_line(offline: str, tmp_path: Path) -> None:
    done, took = genserve(
        "models", "pull", "sdxl-turbo", HF_HUB_OFFLINE=offline, HF_HOME=str(tmp_path / "hf")
    )
    assert done.returncode == 1 and took < 60
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "preset sdxl-turbo" in lines[0] and "stabilityai/sdxl-turbo" in lines[0]
    assert "genserve models pull sdxl-turbo" in lines[0]
    assert "Traceback" not in done.stderr


def test_up_with_a_preset_that_cannot_be_fetched_fails_in_one_line(tmp_path: Path) -> None:
    done, took = genserve(
        "up",
        *("--preset", "flux-schnell", "--port", str(free_port())),
        *("--grpc-port", str(free_port())),
        HF_HUB_OFFLINE="1",
        HF_HOME=str(tmp_path / "hf"),
        GENSERVE_DATA_DIR=str(tmp_path / "data"),
    )
    assert done.returncode == 1 and took < 60
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert len(lines) == 1, (done.stdout, done.stderr)
    assert "preset flux-schnell" in lines[0] and "black-forest-labs/FLUX.1-schnell" in lines[0]


def test_an_unknown_preset_names_the_presets() -> None:
    done, _ = genserve("models", "pull", "dall-e")
    assert done.returncode == 1
    assert "no preset 'dall-e'; presets: sdxl-turbo, sdxl" in done.stderr
