"""``bench.gpu_families`` keeps working: its dry run on a CPU, one family at a twentieth."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.gpu_families import with_values
from tests.utils.scripts import run_module


def test_with_values_replaces_adds_and_removes() -> None:
    text = '# a comment\n[models.x]\nsource = "a/b"  # where\nsteps = 4\npreview_decoder = "c/d"\n'
    changed = with_values(text, {"source": "/tmp/x", "width": 64, "preview_decoder": None})
    assert changed == '# a comment\n[models.x]\nsource = "/tmp/x"\nsteps = 4\nwidth = 64\n'


def test_dry_run_prints_a_row(tmp_path: Path) -> None:
    args = [
        "--families", "sdxl-turbo", "--scale", "0.05", "--device", "cpu", "--steps", "1",
        "--image-side", "64", "--runs", "1", "--cache", str(tmp_path),
    ]  # fmt: skip
    out = run_module("bench.gpu_families", *args, timeout=300)
    number = r"\s+([\d.]+)"
    row = rf"^sdxl-turbo\s+(\S+){number}{number}{number}\s+-\s+-{number}\s+(.*)$"
    rows = re.findall(row, out, re.MULTILINE)
    assert rows, out
    params, _build, _load, seconds, per_second, what = rows[-1]
    assert params.endswith("M") and float(seconds) > 0 and float(per_second) > 0
    assert what == "1 image 64x64, 1 steps"
    assert not list(tmp_path.glob("sdxl-turbo-x*")), "the built folder is deleted after its run"


@pytest.mark.server
def test_together_serves_every_family_from_one_server_in_turns(tmp_path: Path) -> None:
    """Two families under a device that holds one: each request brings its model back and
    sends the other away, as the server's metrics count them."""
    args = [
        "--together", "--max-resident", "1", "--rounds", "2",
        "--families", "sdxl-turbo", "flux-schnell", "--scale", "0.05", "--device", "cpu",
        "--steps", "1", "--image-side", "64", "--cache", str(tmp_path),
    ]  # fmt: skip
    out = run_module("bench.gpu_families", *args, timeout=400)
    table = out[out.index("families taking turns from one server on CPU (cpu)") :]
    assert "the default budget, at most 1 at once" in table
    number = r"\s+([\d.]+)"
    row = rf"^(\d)\s+(sdxl-turbo|flux-schnell)\s+disk{number}{number}\s+(.+?)\s+(\d+)\s+(\d+)$"
    rows = re.findall(row, table, re.MULTILINE)
    assert [(r[0], r[1]) for r in rows] == [
        ("1", "sdxl-turbo"), ("1", "flux-schnell"), ("2", "sdxl-turbo"), ("2", "flux-schnell"),
    ], table  # fmt: skip
    assert [r[4] for r in rows] == [
        "-", "sdxl-turbo (unloaded)", "flux-schnell (unloaded)", "sdxl-turbo (unloaded)",
    ]  # fmt: skip
    assert [(int(r[5]), int(r[6])) for r in rows] == [(1, 0), (2, 1), (3, 2), (4, 3)]
    assert all(float(r[2]) > 0 and float(r[3]) >= float(r[2]) for r in rows)
    assert "after round 2: sdxl-turbo not loaded, flux-schnell on the device" in table
    assert not list(tmp_path.glob("*-x0.05")), "the built folders are deleted after the run"
