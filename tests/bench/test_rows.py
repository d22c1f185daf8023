"""Benchmark rows: goals judged as stated, rows surviving the trip through stdout."""

from __future__ import annotations

import math

import pytest

from bench.rows import MARKER, Row, emit, goal_row, parse, print_table


def test_goals_pass_short_or_not_applicable() -> None:
    assert goal_row("g", "ratio", 1.31, "x", at_least=1.3).status == "pass"
    assert goal_row("g", "ratio", 1.29, "x", at_least=1.3).status == "short"
    assert goal_row("g", "latency", 1.05, "x", at_most=1.05).status == "pass"
    assert goal_row("g", "latency", 1.06, "x", at_most=1.05).status == "short"
    assert goal_row("g", "gpu", 9.0, "img/s", at_least=2.5, applies=False).status == "n/a"
    assert goal_row("g", "none", None, "img/s", at_least=2.5).status == "n/a"
    assert goal_row("g", "nan", math.nan, "x", at_most=1.05).status == "n/a"
    assert goal_row("g", "ratio", 2.0, "x", at_least=1.3).goal == ">= 1.30"


def test_rows_cross_stdout_and_print_in_one_table(capsys: pytest.CaptureFixture[str]) -> None:
    rows = [
        Row("serving · cpu", "gRPC c=8, batching on", 21.5, "img/s", note="p50 358 ms"),
        Row("serving · cpu", "not measured", None, "ms"),
        goal_row("goals · cpu", "on / off", 1.8, "x", at_least=1.3),
    ]
    emit(rows)
    out = capsys.readouterr().out
    lines = ["chatter from a library\n", *out.splitlines(keepends=True)]
    assert all(line.startswith(MARKER) for line in lines[1:])
    assert parse(lines) == rows
    print_table(rows, "title")
    table = capsys.readouterr().out
    for text in ("gRPC c=8, batching on", "21.50", "img/s", "p50 358 ms", ">= 1.30", "pass"):
        assert text in table
    assert table.index("serving · cpu") < table.index("goals · cpu")
