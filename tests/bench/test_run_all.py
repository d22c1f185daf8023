"""``make bench`` keeps printing one table: the serving and encoding benchmarks in smoke runs.

Only the rows are checked, never the figures: each row is there, with a number in
its value column, and the goals come last with a status.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.utils.scripts import run_module

SERVING = [
    "plain diffusers, one image a call",
    "plain diffusers, 8 prompts in one call",
    *(
        f"gRPC c={c}, batching {mode} (max_batch_size {8 if mode == 'on' else 1})"
        for c in (1, 4, 8)
        for mode in ("on", "off")
    ),
    "REST c=8, batching on (max_batch_size 8)",
    "batch-1 latency, plain diffusers",
    "batch-1 latency, batching on",
    "batch-1 latency, batching off",
    "bridge overhead (REST minus gRPC, same request)",
    "inference server overhead (gRPC minus plain diffusers)",
    "one inference server behind the bridge, c=8",
    "two inference servers behind one bridge, c=8",
]
ENCODING = [
    "png (compress_level 1, compress_type Z_RLE)",
    "jpeg (quality 90)",
    "webp (quality 80, method 0)",
]
GOALS = {
    "c=8, batching on / off (small model, CPU)": {"pass", "short"},
    "c=8, batching on / plain sequential diffusers (GPU)": {"n/a"},
    "batch-1 latency / plain diffusers (batching on)": {"pass", "short"},
    "FP8 SDXL 1024x1024, 20 steps, c=8, batching on": {"n/a"},
    "REST c=8, batching on / in-process batched ceiling": {"pass", "short"},
}


def cells(table: str, figure: str) -> list[str]:
    """The cells of the row whose figure is ``figure`` (rich draws columns with │)."""
    for line in table.splitlines():
        parts = [p.strip() for p in line.split("│")]
        if len(parts) > 2 and parts[1] == figure:
            return parts[1:-1]
    raise AssertionError(f"no row {figure!r} in\n{table}")


@pytest.mark.server
def test_one_table_with_every_row_and_the_goals_last(model_cache: Path) -> None:
    args = ["--quick", "--only", "serving", "--only", "encode", "--cache", str(model_cache)]
    wide = {"COLUMNS": "300"}  # no cell wrapped
    table = run_module("bench.run_all", *args, timeout=280, env=wide)
    assert table.count("genserve benchmarks") == 1
    for figure in SERVING + ENCODING:
        value = cells(table, figure)[1]
        assert re.fullmatch(r"-?\d+(\.\d+)?", value), (figure, value)
    for figure, statuses in GOALS.items():
        row = cells(table, figure)
        assert row[4] in statuses, (figure, row)
    sections = [
        table.index("serving · cpu · tiny-sdxl 64x64, 2 steps"),
        table.index("encoding · 256x256"),
        table.index("goals · cpu"),
    ]
    assert sections == sorted(sections)
    assert "failed" not in table
