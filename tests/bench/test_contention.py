"""``bench.bench_contention`` keeps working: a smoke run gives every row, each with a figure."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench.rows import parse
from tests.utils.scripts import run_module


@pytest.mark.server
def test_a_smoke_run_gives_every_row(model_cache: Path) -> None:
    out = run_module(
        "bench.bench_contention", "--quick", "--rows", "--cache", str(model_cache), timeout=280
    )
    rows = parse(out.splitlines())
    figures = {row.figure: row for row in rows}
    for c in (1, 8):
        for label in ("median", "p90"):
            for where in ("alone", "beside a CPU hog"):
                row = figures[f"c={c} {label}, {where}"]
                assert row.value is not None and row.value > 0, row
            assert f"c={c} {label} slowdown (hog / alone)" in figures
        goal = figures[f"CPU hog's slowdown of the median, c={c} (server's policy)"]
        assert goal.status in ("pass", "short") and goal.value is not None
        assert not math.isnan(goal.value)
    assert " threads (" in rows[0].section and ", wait " in rows[0].section  # the server's log
