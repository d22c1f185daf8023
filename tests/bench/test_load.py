"""``make load`` keeps working: its script, run for a few seconds at a low rate."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.utils.scripts import run_module


@pytest.mark.server
def test_load_script_runs_and_loses_nothing(model_cache: Path) -> None:
    args = ["--seconds", "3", "--rate", "2", "--cache", str(model_cache)]
    out = run_module("bench.load", *args, timeout=240)

    def figures(pattern: str) -> tuple[str, ...]:
        found = re.search(pattern, out, re.MULTILINE)
        assert found is not None, (pattern, out)
        return found.groups()

    assert figures(r"^sent\s+(\d+) in") == ("6",)
    assert figures(r"^answered\s+(\d+) \((.*)\)") == ("6", "200: 6")
    assert figures(r"^lost\s+(\d+)") == ("0",)
    figures(r"^latency\s+p50 (\d+) ms\s+p95 (\d+) ms\s+p99 (\d+) ms")
    for process in ("bridge", "inference"):
        before, after = figures(rf"^RSS {process}\s+before\s+([\d.]+) MiB\s+after\s+([\d.]+) MiB")
        assert float(before) > 0 and float(after) > 0
    assert figures(r"^database\s+generations (\d+) \(completed: \d+\); live (\d+)") == ("9", "0")
    balance, ledger = figures(r"^points\s+balance (\d+), ledger sum (\d+)")
    assert balance == ledger
    assert out.rstrip().endswith("OK: nothing lost")
