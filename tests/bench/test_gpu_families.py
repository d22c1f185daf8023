"""``bench.gpu_families`` keeps working: its dry run on a CPU, one family at a twentieth."""

from __future__ import annotations

import re
from pathlib import Path

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
